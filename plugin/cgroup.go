package plugin

import (
	"fmt"
	"path"
	"strings"
)

// CgroupDir returns the container's directory in the cgroup v2 hierarchy
// mounted at root (/sys/fs/cgroup on a pure v2 host, /sys/fs/cgroup/unified
// on a hybrid one) from the OCI cgroupsPath. It handles the cgroupfs form
// ("/k8s.io/ID", "/kubepods/besteffort/podUID/ID") and the systemd form
// "SLICE:PREFIX:NAME" (e.g. "kubepods-besteffort-podUID.slice:cri-containerd:ID",
// which systemd places at kubepods.slice/kubepods-besteffort.slice/
// kubepods-besteffort-podUID.slice/cri-containerd-ID.scope).
func CgroupDir(root, cgroupsPath string) (string, error) {
	if cgroupsPath == "" {
		return "", fmt.Errorf("cgroups path: empty")
	}
	if strings.Count(cgroupsPath, ":") == 2 && !strings.HasPrefix(cgroupsPath, "/") {
		parts := strings.SplitN(cgroupsPath, ":", 3)
		slice, prefix, name := parts[0], parts[1], parts[2]
		dir, err := expandSlice(slice)
		if err != nil {
			return "", fmt.Errorf("cgroups path %q: %w", cgroupsPath, err)
		}
		unit := name
		if !strings.HasSuffix(name, ".slice") {
			unit = name + ".scope"
			if prefix != "" {
				unit = prefix + "-" + unit
			}
		}
		return path.Join(root, dir, unit), nil
	}
	clean := path.Clean("/" + cgroupsPath)
	if clean != "/"+strings.TrimPrefix(cgroupsPath, "/") && clean+"/" != "/"+strings.TrimPrefix(cgroupsPath, "/") {
		return "", fmt.Errorf("cgroups path %q: not a clean path", cgroupsPath)
	}
	return path.Join(root, clean), nil
}

// expandSlice turns a systemd slice name into its path: "a-b-c.slice" →
// "a.slice/a-b.slice/a-b-c.slice"; "" and "-.slice" are the root.
func expandSlice(slice string) (string, error) {
	if slice == "" || slice == "-.slice" {
		return "", nil
	}
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" || strings.Contains(slice, "/") || strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") || strings.Contains(name, "--") {
		return "", fmt.Errorf("invalid systemd slice %q", slice)
	}
	var dirs []string
	prefix := ""
	for _, comp := range strings.Split(name, "-") {
		prefix += comp
		dirs = append(dirs, prefix+".slice")
		prefix += "-"
	}
	return path.Join(dirs...), nil
}
