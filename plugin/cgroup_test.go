package plugin

import (
	"fmt"
	"strings"
	"testing"
)

func TestCgroupDir(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := map[string]struct {
		root, path, want string
	}{
		// The forms containerd, CRI-O, podman and the kubelet produce.
		"containerd cgroupfs":    {root: "/sys/fs/cgroup/unified", path: "/k8s.io/" + id, want: "/sys/fs/cgroup/unified/k8s.io/" + id},
		"kubelet cgroupfs":       {root: "/sys/fs/cgroup", path: "/kubepods/besteffort/pod1/" + id, want: "/sys/fs/cgroup/kubepods/besteffort/pod1/" + id},
		"cgroupfs relative":      {root: "/sys/fs/cgroup", path: "k8s.io/" + id, want: "/sys/fs/cgroup/k8s.io/" + id},
		"cgroupfs trailing /":    {root: "/sys/fs/cgroup", path: "/k8s.io/" + id + "/", want: "/sys/fs/cgroup/k8s.io/" + id},
		"cgroupfs dots in names": {root: "/sys/fs/cgroup", path: "/a..b/.c", want: "/sys/fs/cgroup/a..b/.c"},
		"root not clean":         {root: "/sys/fs/cgroup/unified/", path: "/k8s.io/" + id, want: "/sys/fs/cgroup/unified/k8s.io/" + id},
		"containerd systemd": {root: "/sys/fs/cgroup", path: "kubepods-burstable-pod123.slice:cri-containerd:" + id,
			want: "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod123.slice/cri-containerd-" + id + ".scope"},
		"cri-o systemd": {root: "/sys/fs/cgroup", path: "kubepods-besteffort-pod1.slice:crio:" + id,
			want: "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/crio-" + id + ".scope"},
		"runc systemd":      {root: "/sys/fs/cgroup", path: "system.slice:runc:" + id, want: "/sys/fs/cgroup/system.slice/runc-" + id + ".scope"},
		"podman systemd":    {root: "/sys/fs/cgroup", path: "machine.slice:libpod:" + id, want: "/sys/fs/cgroup/machine.slice/libpod-" + id + ".scope"},
		"systemd root":      {root: "/sys/fs/cgroup", path: "-.slice:docker:" + id, want: "/sys/fs/cgroup/docker-" + id + ".scope"},
		"systemd sub-slice": {root: "/sys/fs/cgroup", path: "a.slice:x:a-b.slice", want: "/sys/fs/cgroup/a.slice/a-b.slice"},
		"systemd deep sub-slice": {root: "/sys/fs/cgroup", path: "a.slice:x:a-b-c.slice",
			want: "/sys/fs/cgroup/a.slice/a-b.slice/a-b-c.slice"},
		"systemd slice below root": {root: "/sys/fs/cgroup", path: "-.slice:x:b.slice", want: "/sys/fs/cgroup/b.slice"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := CgroupDir(tt.root, tt.path)
			if err != nil || got != tt.want {
				t.Fatalf("CgroupDir(%q, %q) = %q, %v; want %q", tt.root, tt.path, got, err, tt.want)
			}
		})
	}
}

// TestCgroupDirRefused holds the paths that would escape the cgroup root,
// name the root cgroup itself (every process of the host) or name a unit
// systemd would not create.
func TestCgroupDirRefused(t *testing.T) {
	tests := map[string]struct {
		root, path, wantErr string
	}{
		"systemd name escapes":       {path: "slice:cri:../../../../etc", wantErr: `name "../../../../etc": contains ".."`},
		"systemd valid slice escape": {path: "system.slice:cri:../../../../etc", wantErr: `name "../../../../etc": contains ".."`},
		"systemd absolute name":      {path: "x.slice:cri:/etc", wantErr: `name "/etc": character '/'`},
		"systemd name with /":        {path: "system.slice:runc:a/b", wantErr: `name "a/b": character '/'`},
		"systemd prefix ..":          {path: "-.slice:..:x", wantErr: `prefix "..": contains ".."`},
		"systemd prefix with /":      {path: "system.slice:a/..:x", wantErr: `prefix "a/..": contains ".."`},
		"systemd slice ..":           {path: "...slice:cri:x", wantErr: `slice "...slice": contains ".."`},
		"systemd slice with /":       {path: "a/b.slice:cri:x", wantErr: `slice "a/b.slice": character '/'`},
		"systemd name ..slice":       {path: "a.slice:cri:..slice", wantErr: `name "..slice": contains ".."`},
		"systemd name root slice":    {path: "a.slice:cri:-.slice", wantErr: "must be a child of the slice"},
		"systemd name foreign slice": {path: "system.slice:cri:user.slice", wantErr: "must be a child of the slice"},
		"systemd empty slice":        {path: ":cri:x", wantErr: "empty slice"},
		"systemd empty prefix":       {path: "system.slice::x", wantErr: "empty prefix"},
		"systemd empty name":         {path: "system.slice:cri:", wantErr: "empty name"},
		"systemd all empty":          {path: "::", wantErr: "empty slice"},
		"systemd NUL":                {path: "system.slice:cri:a\x00b", wantErr: "character"},
		"systemd not a slice":        {path: "kubepods:x:abc", wantErr: "invalid systemd slice"},
		"systemd bad slice":          {path: "a--b.slice:x:abc", wantErr: "invalid systemd slice"},
		"systemd bad name slice":     {path: "a.slice:x:a--b.slice", wantErr: "invalid systemd slice"},
		"empty":                      {path: "", wantErr: "empty; want"},
		"root":                       {path: "/", wantErr: "names the root cgroup"},
		"double slash":               {path: "//", wantErr: "names the root cgroup"},
		"up from root":               {path: "/..", wantErr: `path component ".."`},
		"relative escape":            {path: "../../etc", wantErr: `path component ".."`},
		"inner escape":               {path: "a/../../b", wantErr: `path component ".."`},
		"escape after a name":        {path: "/k8s.io/../../etc", wantErr: `path component ".."`},
		"dot":                        {path: "/.", wantErr: `path component "."`},
		"dot component":              {path: "/k8s.io/./abc", wantErr: `path component "."`},
		"empty component":            {path: "/k8s.io//abc", wantErr: "empty path component"},
		"NUL":                        {path: "/k8s.io/a\x00b", wantErr: "NUL"},
		"relative root":              {root: "sys/fs/cgroup", path: "/k8s.io/abc", wantErr: "want an absolute path"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			root := tt.root
			if root == "" {
				root = "/sys/fs/cgroup"
			}
			got, err := CgroupDir(root, tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CgroupDir(%q, %q) = %q, %v; want an error with %q", root, tt.path, got, err, tt.wantErr)
			}
			// Errors name the input.
			if tt.root == "" && !strings.Contains(err.Error(), fmt.Sprintf("cgroups path %q", tt.path)) {
				t.Errorf("error %q does not name the input %q", err, tt.path)
			}
			t.Log(err)
		})
	}
}
