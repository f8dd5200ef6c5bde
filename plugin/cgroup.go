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
//
// The result is always strictly below root: a path that names the root
// cgroup itself (which holds every process of the host), that has a ".."
// or empty component, or a systemd part that is empty, has a character
// systemd does not allow in unit names (such as "/") or contains "..", is
// an error.
func CgroupDir(root, cgroupsPath string) (string, error) {
	if !path.IsAbs(root) {
		return "", fmt.Errorf("cgroup root %q: want an absolute path", root)
	}
	root = path.Clean(root)
	var rel string
	var err error
	if strings.Count(cgroupsPath, ":") == 2 && !strings.HasPrefix(cgroupsPath, "/") {
		rel, err = systemdRel(cgroupsPath)
	} else {
		rel, err = cgroupfsRel(cgroupsPath)
	}
	if err != nil {
		return "", fmt.Errorf("cgroups path %q: %w", cgroupsPath, err)
	}
	// Both forms were checked part by part; check the result as a whole too.
	dir, below := path.Join(root, rel), root+"/"
	if root == "/" {
		below = "/"
	}
	if !strings.HasPrefix(dir, below) || dir == below {
		return "", fmt.Errorf("cgroups path %q: resolves to %q, not below the cgroup root %q", cgroupsPath, dir, root)
	}
	return dir, nil
}

// cgroupfsRel checks a cgroupfs cgroupsPath ("/k8s.io/ID", or relative
// "k8s.io/ID") and returns it relative to the root: one or more non-empty
// components, none "." or "..", a trailing "/" allowed.
func cgroupfsRel(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("empty; want a cgroupfs path such as /k8s.io/ID or a systemd SLICE:PREFIX:NAME")
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("contains a NUL byte")
	}
	rel := strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/")
	if rel == "" {
		return "", fmt.Errorf("names the root cgroup; want a container's cgroup below it, such as /k8s.io/ID")
	}
	for _, comp := range strings.Split(rel, "/") {
		switch comp {
		case "":
			return "", fmt.Errorf("empty path component; want /A/B with no %q", "//")
		case ".", "..":
			return "", fmt.Errorf("path component %q; want a path without . or .. components", comp)
		}
	}
	return rel, nil
}

// systemdRel checks a systemd cgroupsPath "SLICE:PREFIX:NAME" and returns
// where systemd places the unit, relative to the root: the expanded slice,
// then PREFIX-NAME.scope, or, when NAME is itself a slice, that slice, which
// must be a child of SLICE.
func systemdRel(p string) (string, error) {
	parts := strings.SplitN(p, ":", 3)
	for i, what := range []string{"slice", "prefix", "name"} {
		if err := unitPart(what, parts[i]); err != nil {
			return "", err
		}
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	dir, err := expandSlice(slice)
	if err != nil {
		return "", err
	}
	if !strings.HasSuffix(name, ".slice") {
		return path.Join(dir, prefix+"-"+name+".scope"), nil
	}
	sub, err := expandSlice(name)
	if err != nil {
		return "", fmt.Errorf("name: %w", err)
	}
	if sub == "" || (dir != "" && !strings.HasPrefix(sub, dir+"/")) {
		return "", fmt.Errorf("name %q: a slice name must be a child of the slice %q (such as %s-NAME.slice)", name, slice, strings.TrimSuffix(slice, ".slice"))
	}
	return sub, nil
}

// unitPart checks one part of a systemd cgroupsPath: non-empty, only the
// characters systemd allows in unit names, no "..".
func unitPart(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s; want SLICE:PREFIX:NAME with all three set, such as system.slice:runc:ID", what)
	}
	if strings.Contains(s, "..") {
		return fmt.Errorf("%s %q: contains %q; want a unit name part without it", what, s, "..")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.@\\", r)) {
			return fmt.Errorf("%s %q: character %q; want letters, digits and - _ . @ \\ only", what, s, r)
		}
	}
	return nil
}

// expandSlice turns a systemd slice name into its path: "a-b-c.slice" →
// "a.slice/a-b.slice/a-b-c.slice"; "-.slice" is the root ("").
func expandSlice(slice string) (string, error) {
	if slice == "-.slice" {
		return "", nil
	}
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" || strings.Contains(slice, "/") || strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") || strings.Contains(name, "--") {
		return "", fmt.Errorf("invalid systemd slice %q; want NAME.slice, NAME-SUB.slice or -.slice, without empty dash-separated parts", slice)
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
