package deploy_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"vigil.dev/vigil/deploy"
)

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
	Platform    *struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
	} `json:"platform"`
}

// TestImageBuild runs deploy/image/build.sh and checks its tarball is an
// OCI image layout that containerd imports under its name: index, manifest
// and config with matching digests and sizes, the entrypoint, and a static,
// executable vigil in the layer that runs.
func TestImageBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds vigil (-short)")
	}
	for _, tool := range []string{"bash", "tar", "gzip", "sha256sum", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("build.sh needs %s: %v", tool, err)
		}
	}
	out := filepath.Join(t.TempDir(), "vigil.tar")
	const name = "localhost/vigil:test"
	cmd := exec.Command(filepath.Join(deploy.Dir(), "image", "build.sh"), "-o", out, "-n", name)
	cmd.Env = append(os.Environ(), "VERSION=test")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}

	blobs := readTar(t, out)
	if string(blobs["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout %q", blobs["oci-layout"])
	}
	var index struct {
		SchemaVersion int          `json:"schemaVersion"`
		Manifests     []descriptor `json:"manifests"`
	}
	mustJSON(t, blobs["index.json"], &index)
	if index.SchemaVersion != 2 || len(index.Manifests) != 1 {
		t.Fatalf("index.json %s", blobs["index.json"])
	}
	md := index.Manifests[0]
	if md.Annotations["io.containerd.image.name"] != name || md.Platform == nil || md.Platform.Architecture != runtime.GOARCH {
		t.Errorf("manifest descriptor %+v: want io.containerd.image.name %s, platform linux/%s", md, name, runtime.GOARCH)
	}
	var manifest struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Config        descriptor   `json:"config"`
		Layers        []descriptor `json:"layers"`
	}
	mustJSON(t, blob(t, blobs, md), &manifest)
	if manifest.MediaType != "application/vnd.oci.image.manifest.v1+json" || md.MediaType != manifest.MediaType ||
		manifest.Config.MediaType != "application/vnd.oci.image.config.v1+json" || len(manifest.Layers) != 1 {
		t.Fatalf("manifest %+v", manifest)
	}
	var config struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Config       struct {
			Entrypoint []string `json:"Entrypoint"`
			Cmd        []string `json:"Cmd"`
		} `json:"config"`
		RootFS struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	mustJSON(t, blob(t, blobs, manifest.Config), &config)
	if config.OS != "linux" || config.Architecture != runtime.GOARCH ||
		strings.Join(config.Config.Entrypoint, " ") != "/usr/bin/vigil" || strings.Join(config.Config.Cmd, " ") != "agent" {
		t.Errorf("config %+v: want linux/%s, entrypoint /usr/bin/vigil, cmd agent", config, runtime.GOARCH)
	}

	// The layer: gzip of a tar whose digest is the config's diff_id.
	ld := manifest.Layers[0]
	if ld.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Errorf("layer media type %q", ld.MediaType)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(t, blobs, ld)))
	if err != nil {
		t.Fatal(err)
	}
	layer, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if len(config.RootFS.DiffIDs) != 1 || config.RootFS.DiffIDs[0] != digest(layer) {
		t.Errorf("diff_ids %v, the layer's digest is %s", config.RootFS.DiffIDs, digest(layer))
	}
	var bin []byte
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "./usr/bin/vigil" {
			if h.Mode&0o111 == 0 || h.Uid != 0 {
				t.Errorf("usr/bin/vigil: mode %o, uid %d: want executable, root's", h.Mode, h.Uid)
			}
			bin, _ = io.ReadAll(tr)
		}
	}
	if bin == nil {
		t.Fatal("no ./usr/bin/vigil in the layer")
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("vigil in the image is dynamically linked (%v): build it with CGO_ENABLED=0", p.Type)
		}
	}
	path := filepath.Join(t.TempDir(), "vigil")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	help, err := exec.Command(path, "--help").Output()
	if err != nil || !strings.Contains(string(help), "agent") || !strings.HasPrefix(string(help), "vigil: ") {
		t.Errorf("vigil --help: %v\n%s", err, help)
	}
}

func readTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
}

// blob is the blob of d, checked against its digest and size.
func blob(t *testing.T, files map[string][]byte, d descriptor) []byte {
	t.Helper()
	hexd, ok := strings.CutPrefix(d.Digest, "sha256:")
	b, found := files["blobs/sha256/"+hexd]
	if !ok || !found {
		t.Fatalf("blob %s missing", d.Digest)
	}
	if digest(b) != d.Digest || int64(len(b)) != d.Size {
		t.Fatalf("blob %s: digest %s, size %d (descriptor says %d)", d.Digest, digest(b), len(b), d.Size)
	}
	return b
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(fmt.Errorf("%w: %s", err, b))
	}
}
