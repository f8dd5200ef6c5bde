#!/bin/bash
# an entrypoint dropping root: runuser, su, setpriv to nobody; python dropping with os.setresuid
set -u
runuser -u nobody -- id >/dev/null; su -s /bin/sh nobody -c 'id -u' >/dev/null
setpriv --reuid=65534 --regid=65534 --clear-groups id >/dev/null
/usr/bin/python3 -c 'import os; os.setgroups([]); os.setresgid(65534,65534,65534); os.setresuid(65534,65534,65534); print(os.getuid())' >/dev/null
/usr/bin/perl -e '$)="65534 65534"; $(=65534; $<=$>=65534; print "$<\n"' >/dev/null
exit 0
