//go:build tools

package crio

import _ "github.com/cri-o/cri-o/cmd/crio"
