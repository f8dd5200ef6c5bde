package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/bpf"
	"vigil.dev/vigil/event"
)

// Churn: annotated pods created and removed as fast as the runtime allows
// (VIGIL_CHURN_PODS, default churnPods; `make bench-churn` runs 500), by
// VIGIL_CHURN_WORKERS clients at once (default 4).
const (
	churnPodsEnv    = "VIGIL_CHURN_PODS"
	churnWorkersEnv = "VIGIL_CHURN_WORKERS"
	churnPods       = 20
)

// churnResult is the churn's figures (written to $VIGIL_CHURN_OUT when set).
type churnResult struct {
	Pods    int     `json:"pods"`
	Workers int     `json:"workers"`
	Seconds float64 `json:"seconds"`
	PodsPS  float64 `json:"pods_per_s"`
	// Per pod: run sandbox, create, start, exit, remove.
	PodP50Ms float64 `json:"pod_p50_ms"`
	PodP99Ms float64 `json:"pod_p99_ms"`
	// Before and after: what the agent held, the tracer's maps, the
	// notify fd keeper's fds.
	Before churnHeld `json:"before"`
	After  churnHeld `json:"after"`
}

type churnHeld struct {
	agentctl.Held
	Live       int `json:"live_containers"`
	NotifyOpen int `json:"notify_open"`
	MapTracked int `json:"map_tracked"`
	MapFinal   int `json:"map_final"`
	KeeperFDs  int `json:"keeper_fds"`
}

// TestChurn creates and removes annotated pods as fast as the runtime
// allows and checks that every container was tracked before its first
// exec (its events start at sequence number 1 and hold its first execve,
// with no gap before it) and that nothing is left afterwards: no tracer
// map entries, cgroups, detector or audit writer state, registry entries,
// notify fds (agent and keeper), goroutines or fds beyond what there was
// before.
func TestChurn(t *testing.T) {
	need(t)
	skipOn(t, "crio", "the churn runs in the containerd pass, to keep the suite's wall time")
	pods, workers := churnPods, 4
	if v := os.Getenv(churnPodsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive number of pods", churnPodsEnv, v)
		}
		pods = n
	}
	if v := os.Getenv(churnWorkersEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive number of workers", churnWorkersEnv, v)
		}
		workers = n
	}
	conn, err := grpc.NewClient("unix://"+testRuntime.endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := cri.NewRuntimeServiceClient(conn)
	ctx := context.Background()

	// One pod first, outside the figures: images and snapshots warm, the
	// agent's lazily made state (outputs, NRI connections) made.
	if _, err := churnPod(ctx, rt, "churn-warm"); err != nil {
		t.Fatal(err)
	}
	// The baseline: the agent holds state for its live containers only.
	var before churnHeld
	baseline := func() bool {
		before = churnState(t)
		return before.Tracked == before.Live && before.Detector <= before.Live && before.Audit <= before.Live+1
	}
	// An audit log reopened at the agent's start carries the counters of
	// earlier containers: the agent forgets them within two sweeps (20 s).
	for deadline := time.Now().Add(60 * time.Second); !baseline() && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if !baseline() {
		t.Fatalf("the agent's state is not down to its live containers before the churn: %+v\nagent log:\n%s", before, agent.logs())
	}

	var (
		mu    sync.Mutex
		ids   []string
		times []time.Duration
		errs  []error
		next  = make(chan int)
		wg    sync.WaitGroup
	)
	t0 := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				start := time.Now()
				id, err := churnPod(ctx, rt, fmt.Sprintf("churn-%d", i))
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("pod %d: %w", i, err))
				} else {
					ids = append(ids, id)
					times = append(times, time.Since(start))
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < pods; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(t0)
	for _, err := range errs[:min(len(errs), 5)] {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.Fatalf("%d of %d pods failed", len(errs), pods)
	}

	// Every container was tracked before its first exec.
	var evs map[string][]event.Event
	eventually(t, "every container's exit_group in the events", 30*time.Second, func() bool {
		evs = churnEvents(t, ids)
		for _, id := range ids {
			e := evs[id]
			if len(e) == 0 || e[len(e)-1].Name() != "exit_group" {
				return false
			}
		}
		return true
	})
	cgroups := map[uint64]bool{}
	for _, id := range ids {
		e := evs[id]
		slices.SortFunc(e, func(a, b event.Event) int { return int(a.Seq) - int(b.Seq) })
		exec := slices.IndexFunc(e, func(ev event.Event) bool { return ev.Name() == "execve" && ev.Ret == 0 })
		switch {
		case exec < 0:
			t.Errorf("container %s: no successful execve among its %d events", id[:12], len(e))
		case e[0].Seq != 1:
			t.Errorf("container %s: first event has sequence number %d, want 1 (tracked from its start)", id[:12], e[0].Seq)
		case e[exec].Seq != uint64(exec+1):
			t.Errorf("container %s: %d events before its first execve (sequence number %d): records missing", id[:12], exec, e[exec].Seq)
		}
		for _, ev := range e {
			cgroups[ev.CgroupID] = true
		}
	}

	// Nothing left behind.
	var after churnHeld
	settled := func() bool {
		after = churnState(t)
		return after.Tracked <= before.Tracked && after.Detector <= before.Detector && after.Audit <= before.Audit &&
			after.Live <= before.Live && after.NotifyOpen <= before.NotifyOpen && after.MapTracked <= before.MapTracked &&
			after.MapFinal <= before.MapFinal && after.KeeperFDs <= before.KeeperFDs &&
			after.FDs <= before.FDs+churnSlack && after.Goroutines <= before.Goroutines+churnSlack
	}
	for deadline := time.Now().Add(30 * time.Second); !settled() && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	if !settled() {
		t.Errorf("after %d pods the agent holds more than before:\nbefore %+v\nafter  %+v", pods, before, after)
	}
	st, err := status()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Containers {
		if slices.Contains(ids, c.ID) {
			t.Errorf("container %s still in the registry: %+v", c.ID[:12], c)
		}
	}
	for id := range cgroups {
		if dir, err := bpf.CgroupPath(id); err == nil {
			t.Errorf("cgroup %d (%s) of a removed container still exists", id, dir)
		}
	}

	slices.Sort(times)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res := churnResult{Pods: pods, Workers: workers, Seconds: elapsed.Seconds(), PodsPS: float64(pods) / elapsed.Seconds(),
		PodP50Ms: ms(pct(times, 50)), PodP99Ms: ms(pct(times, 99)), Before: before, After: after}
	out, _ := json.Marshal(res)
	t.Logf("churn: %s", out)
	if path := os.Getenv("VIGIL_CHURN_OUT"); path != "" {
		if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// churnSlack is how many goroutines and fds the agent may hold beyond
// what it held before the churn (idle connections come and go): less than
// the pods of the smallest churn, so one leaked per container shows.
const churnSlack = 8

// churnPod runs one annotated pod whose container execs a shell that
// exits at once, waits for the exit and removes the pod. It returns the
// container's id.
func churnPod(ctx context.Context, rt cri.RuntimeServiceClient, name string) (string, error) {
	podCfg := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: name, Namespace: "churn", Uid: fmt.Sprintf("%s-%d", name, os.Getpid())},
		Linux:        &cri.LinuxPodSandboxConfig{SecurityContext: &cri.LinuxSandboxSecurityContext{NamespaceOptions: &cri.NamespaceOption{Network: cri.NamespaceMode_NODE}}},
		LogDirectory: filepath.Join(workDir, "logs", name),
		Annotations:  monitored,
	}
	pod, err := rt.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		return "", fmt.Errorf("run sandbox: %w", err)
	}
	defer func() {
		rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	}()
	cfg := &cri.ContainerConfig{
		Metadata: &cri.ContainerMetadata{Name: "app"},
		Image:    &cri.ImageSpec{Image: busybox},
		Command:  []string{"sh", "-c", "exit 0"},
		LogPath:  "app.log",
	}
	c, err := rt.CreateContainer(ctx, &cri.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	if _, err := rt.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		return c.ContainerId, fmt.Errorf("start container: %w", err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s, err := rt.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: c.ContainerId})
		if err != nil {
			return c.ContainerId, fmt.Errorf("container status: %w", err)
		}
		if s.Status.State == cri.ContainerState_CONTAINER_EXITED {
			if s.Status.ExitCode != 0 {
				return c.ContainerId, fmt.Errorf("container exited with %d (%s)", s.Status.ExitCode, s.Status.Message)
			}
			break
		}
		if time.Now().After(deadline) {
			return c.ContainerId, fmt.Errorf("container still %s after 20s", s.Status.State)
		}
	}
	if _, err := rt.RemoveContainer(ctx, &cri.RemoveContainerRequest{ContainerId: c.ContainerId}); err != nil {
		return c.ContainerId, fmt.Errorf("remove container: %w", err)
	}
	return c.ContainerId, nil
}

// churnState reads what the agent, the tracer's maps and the notify fd
// keeper hold now.
func churnState(t *testing.T) churnHeld {
	t.Helper()
	st, err := status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Held == nil {
		t.Fatal("vigil status has no held counts")
	}
	h := churnHeld{Held: *st.Held, NotifyOpen: st.NotifyOpen, KeeperFDs: -1}
	for _, c := range st.Containers {
		if c.Tracked {
			h.Live++
		}
	}
	h.MapTracked = mapEntries(t, "vigil_tracked")
	h.MapFinal = mapEntries(t, "vigil_final")
	if data, err := os.ReadFile(keeperSocket() + ".pid"); err == nil {
		if fds, err := os.ReadDir(fmt.Sprintf("/proc/%s/fd", strings.TrimSpace(string(data)))); err == nil {
			h.KeeperFDs = len(fds)
		}
	}
	return h
}

// mapEntries counts the entries of one of the tracer's pinned maps.
func mapEntries(t *testing.T, name string) int {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, name), nil)
	if err != nil {
		t.Fatalf("tracer map %s: %v", name, err)
	}
	defer m.Close()
	var k uint64
	v := make([]byte, m.ValueSize())
	n := 0
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatalf("tracer map %s: %v", name, err)
	}
	return n
}

// churnEvents reads the events of the given containers from the agent's
// event stream (and its last rotated file), by container id.
func churnEvents(t *testing.T, ids []string) map[string][]event.Event {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	out := map[string][]event.Event{}
	for _, path := range []string{agent.events + ".1", agent.events} {
		f, err := os.Open(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if !bytes.HasPrefix(line, []byte(`{"seq":`)) || !bytes.Contains(line, []byte(`"namespace":"churn"`)) {
				continue
			}
			var ev event.Event
			if err := json.Unmarshal(line, &ev); err != nil {
				f.Close()
				t.Fatalf("bad event line %q: %v", line, err)
			}
			if ev.Container != nil && want[ev.Container.ID] {
				out[ev.Container.ID] = append(out[ev.Container.ID], ev)
			}
		}
		f.Close()
	}
	return out
}
