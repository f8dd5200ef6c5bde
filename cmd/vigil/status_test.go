package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/event"
)

func TestPrintStatus(t *testing.T) {
	st := &agentctl.Status{Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Connected: true, Connections: 2, Events: 1234,
		NotifyOpen: 1, NotifyFds: 3, NotifyAnswer: 7, QueueDepth: 17,
		Containers: []agentctl.ContainerStatus{
			{Container: event.Container{ID: "0123456789abcdef", Name: "app", Pod: "web", Namespace: "shop"}, State: "running",
				Monitor: true, Forced: true, Seccomp: "notify", Mode: "enforce", CgroupID: 42, Tracked: true, Seen: 100, Emitted: 98, Dropped: 31, Throttled: 29,
				Class: "block", Stopped: 4},
			{Container: event.Container{ID: "x", Name: "db", Pod: "web", Namespace: "shop"}, State: "running",
				Model: `rules only: no model for workload "db" (the model is for "app")`},
		},
		Finished: []agentctl.ContainerStatus{{Container: event.Container{ID: "y", Name: "job", Pod: "batch", Namespace: "shop"}, State: "stopped", Monitor: true, Seen: 9, Emitted: 9}},
		Rejected: []string{"zzz"},
		Sampling: &agentctl.Sampling{Hot: 2, Idle: 998, FullEvery: 250 * time.Millisecond, IdleEvery: 2 * time.Second, Budget: 2000,
			CPUBudget: 0.05, CPU: 0.0412, StatCost: 139600 * time.Nanosecond, FullCost: 201 * time.Microsecond,
			FullPeriod: 250 * time.Millisecond, IdlePeriod: 21500 * time.Millisecond},
	}
	var b bytes.Buffer
	printStatus(&b, st)
	out := b.String()
	for _, want := range []string{
		"runtime connected (2 connections), 1234 events written",
		"1 fds open, 3 received, 7 decisions",
		"0123456789ab", // ids shortened
		"forced", "notify", "100", "98",
		"17 batches waiting for the pipeline",
		"web/app: tracing class block, processes stopped 4 times",
		`web/db: rules only: no model for workload "db"`,
		"THROTTLED",
		"job", "stopped",
		"rejected by the runtime (seccomp adjustment refused): zzz",
		"sampling CPU: 0.041 of 0.050 cores (a cpu.stat sample 140µs, a full one 201µs); worst periods in the last 10-20 s: hot 250ms, idle 21.5s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "0123456789abcdef") {
		t.Errorf("long id not shortened:\n%s", out)
	}
	lines := strings.Split(out, "\n")
	var dbLine string
	for _, l := range lines {
		if strings.Contains(l, " db ") {
			dbLine = l
		}
	}
	var appLine string
	for _, l := range lines {
		if strings.Contains(l, " app ") {
			appLine = l
		}
	}
	if f := strings.Fields(appLine); len(f) < 2 || f[len(f)-2] != "31" || f[len(f)-1] != "29" {
		t.Errorf("monitored row %q: want DROPPED 31 then THROTTLED 29 last", appLine)
	}
	if !strings.Contains(dbLine, " no ") || !strings.Contains(dbLine, " - ") {
		t.Errorf("unmonitored row %q: want monitor 'no' and '-' for no profile", dbLine)
	}
}
