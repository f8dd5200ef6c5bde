package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestLogFormat(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check func(line string) bool
	}{
		{"json", func(line string) bool {
			var m map[string]any
			return json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "hello" && m["pod"] == "web" && m["level"] == "info"
		}},
		{"text", func(line string) bool {
			return strings.Contains(line, `msg=hello`) && strings.Contains(line, "pod=web") && strings.Contains(line, "level=info")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := logFormatter(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			log := logrus.New()
			log.SetOutput(&b)
			log.SetFormatter(f)
			log.WithField("pod", "web").Info("hello")
			if !tc.check(strings.TrimSpace(b.String())) {
				t.Errorf("--log-format %s wrote %q", tc.name, b.String())
			}
		})
	}
	_, err := logFormatter("xml")
	if err == nil || !strings.Contains(err.Error(), `--log-format "xml": allowed values are text, json`) {
		t.Errorf("bad format: %v", err)
	}
	if status := runAgent([]string{"--log-format", "xml"}); status != 1 {
		t.Errorf("vigil agent --log-format xml: status %d, want 1", status)
	}
}
