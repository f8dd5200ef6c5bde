package plugin

import (
	"strings"
	"testing"
)

func TestCgroupDir(t *testing.T) {
	tests := []struct {
		name, root, path, want, wantErr string
	}{
		{name: "cgroupfs containerd", root: "/sys/fs/cgroup/unified", path: "/k8s.io/abc", want: "/sys/fs/cgroup/unified/k8s.io/abc"},
		{name: "cgroupfs kubelet", root: "/sys/fs/cgroup", path: "/kubepods/besteffort/pod1/abc", want: "/sys/fs/cgroup/kubepods/besteffort/pod1/abc"},
		{name: "relative", root: "/sys/fs/cgroup", path: "k8s.io/abc", want: "/sys/fs/cgroup/k8s.io/abc"},
		{name: "systemd", root: "/sys/fs/cgroup", path: "kubepods-besteffort-pod1.slice:cri-containerd:abc",
			want: "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"},
		{name: "systemd root slice", root: "/sys/fs/cgroup", path: "-.slice:docker:abc", want: "/sys/fs/cgroup/docker-abc.scope"},
		{name: "systemd no prefix", root: "/sys/fs/cgroup", path: "system.slice::abc", want: "/sys/fs/cgroup/system.slice/abc.scope"},
		{name: "systemd slice name", root: "/sys/fs/cgroup", path: "a.slice:x:a-b.slice", want: "/sys/fs/cgroup/a.slice/a-b.slice"},
		{name: "empty", root: "/sys/fs/cgroup", path: "", wantErr: "empty"},
		{name: "escape", root: "/sys/fs/cgroup", path: "/k8s.io/../../etc", wantErr: "not a clean path"},
		{name: "bad slice", root: "/sys/fs/cgroup", path: "a--b.slice:x:abc", wantErr: "invalid systemd slice"},
		{name: "not a slice", root: "/sys/fs/cgroup", path: "kubepods:x:abc", wantErr: "invalid systemd slice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CgroupDir(tt.root, tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CgroupDir(%q) = %q, %v; want error %q", tt.path, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("CgroupDir(%q) = %q, %v; want %q", tt.path, got, err, tt.want)
			}
		})
	}
}
