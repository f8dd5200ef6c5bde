// Command render-manifests writes deploy/manifests from the Helm chart
// (deploy/helm/vigil, default values) with helm's Go library: run it after
// changing the chart (deploy/manifests/update.sh); a test fails while the
// committed files differ from a fresh render.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"vigil.dev/vigil/deploy"
)

func main() {
	files, err := deploy.Manifests()
	if err != nil {
		fmt.Fprintf(os.Stderr, "render-manifests: %v\n", err)
		os.Exit(1)
	}
	dir := deploy.ManifestsDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "render-manifests: %v\n", err)
			os.Exit(1)
		}
	}
	fmt.Printf("render-manifests: wrote %d files in %s\n", len(files), dir)
}
