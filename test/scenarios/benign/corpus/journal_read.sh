#!/bin/bash
# journalctl reads, as an operator or a log shipper would
set -u
journalctl -n 200 --no-pager >/dev/null 2>&1; journalctl --list-boots --no-pager >/dev/null 2>&1
journalctl -p err -b --no-pager -o json >/dev/null 2>&1; journalctl --disk-usage >/dev/null 2>&1
journalctl -u ssh --since '-1h' --no-pager >/dev/null 2>&1; last -n 5 >/dev/null 2>&1; dmesg 2>/dev/null | tail -5 >/dev/null
exit 0
