package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"vigil.dev/vigil/annotations"
	"vigil.dev/vigil/detector"
	"vigil.dev/vigil/event"
)

// StateVersion is the version of the state file this package writes and
// reads.
const StateVersion = 1

// State is what is in force on one container (vigil status).
type State struct {
	CgroupID    uint64            `json:"cgroup"`
	ContainerID string            `json:"container_id,omitempty"`
	Throttle    *ThrottleState    `json:"throttle,omitempty"`
	DenySyscall *DenySyscallState `json:"deny_syscall,omitempty"`
	DenyConnect *DenyConnectState `json:"deny_connect,omitempty"`
	FrozenSince time.Time         `json:"frozen_since,omitzero"`
	KilledAt    time.Time         `json:"killed_at,omitzero"` // after kill, no more actions run
}

// Timed is the restore timer of a throttle or deny-connect: it is undone
// Wait after the last verdict of one of Classes.
type Timed struct {
	Since       time.Time        `json:"since"`
	Classes     []detector.Class `json:"classes"`
	LastVerdict time.Time        `json:"last_verdict"`
	Wait        time.Duration    `json:"wait_ns"`
}

// RestoreAt is when the action is undone if no verdict of its classes
// comes first.
func (t *Timed) RestoreAt() time.Time { return t.LastVerdict.Add(t.Wait) }

// ThrottleState is a throttle in force: the values set and those to put
// back.
type ThrottleState struct {
	Timed
	Applied  CPU `json:"applied"`
	Original CPU `json:"original"`
}

// DenySyscallState is a deny-syscall in force.
type DenySyscallState struct {
	Since    time.Time `json:"since"`
	Syscalls []string  `json:"syscalls"`
	Errno    string    `json:"errno"`
}

// DenyConnectState is a deny-connect in force.
type DenyConnectState struct {
	Timed
	Rule ConnectRule `json:"rule"`
}

// backoff is the hysteresis of one undoable action on one container.
type backoff struct {
	LastRestore time.Time `json:"last_restore"`
	Factor      int       `json:"factor"`
}

// next is the wait of a new application at now: restoreAfter, doubled for
// each application within 2×restoreAfter of the last restore, at most
// MaxBackoff×restoreAfter.
func (b *backoff) next(now time.Time, restoreAfter time.Duration) time.Duration {
	if !b.LastRestore.IsZero() && now.Sub(b.LastRestore) <= 2*restoreAfter {
		b.Factor = min(max(b.Factor, 1)*2, MaxBackoff)
	} else {
		b.Factor = 1
	}
	return time.Duration(b.Factor) * restoreAfter
}

// entry is the controller's record of one container.
type entry struct {
	t       Target
	s       State
	backoff map[Action]*backoff
}

func (e *entry) empty() bool {
	s := &e.s
	return s.Throttle == nil && s.DenySyscall == nil && s.DenyConnect == nil &&
		s.FrozenSince.IsZero() && s.KilledAt.IsZero() && len(e.backoff) == 0
}

func (e *entry) clone() State {
	s := e.s
	if s.Throttle != nil {
		th := *s.Throttle
		th.Classes = slices.Clone(th.Classes)
		s.Throttle = &th
	}
	if s.DenySyscall != nil {
		d := *s.DenySyscall
		d.Syscalls = slices.Clone(d.Syscalls)
		s.DenySyscall = &d
	}
	if s.DenyConnect != nil {
		d := *s.DenyConnect
		d.Classes = slices.Clone(d.Classes)
		d.Rule = ConnectRule{Dest: slices.Clone(d.Rule.Dest), DNSOnlyTo: slices.Clone(d.Rule.DNSOnlyTo)}
		s.DenyConnect = &d
	}
	return s
}

// stateFile is the JSON of Config.StateFile.
type stateFile struct {
	Version    int              `json:"version"`
	Saved      time.Time        `json:"saved"`
	Containers []savedContainer `json:"containers"`
}

type savedContainer struct {
	State
	Target  savedTarget         `json:"target"`
	Backoff map[Action]*backoff `json:"backoff,omitempty"`
}

type savedTarget struct {
	Container *event.Container `json:"container,omitempty"`
	Mode      annotations.Mode `json:"mode,omitempty"`
	Policy    string           `json:"policy,omitempty"`
	CgroupDir string           `json:"cgroup_dir,omitempty"`
	CgroupRel string           `json:"cgroup_rel,omitempty"`
	ViaNRI    bool             `json:"via_nri,omitempty"`
}

func encodeState(entries map[uint64]*entry, now time.Time) ([]byte, error) {
	f := stateFile{Version: StateVersion, Saved: now, Containers: []savedContainer{}}
	for _, e := range entries {
		f.Containers = append(f.Containers, savedContainer{
			State: e.clone(),
			Target: savedTarget{Container: e.t.Container, Mode: e.t.Mode, Policy: e.t.Policy,
				CgroupDir: e.t.CgroupDir, CgroupRel: e.t.CgroupRel, ViaNRI: e.t.ViaNRI},
			Backoff: e.backoff,
		})
	}
	slices.SortFunc(f.Containers, func(a, b savedContainer) int {
		switch {
		case a.CgroupID < b.CgroupID:
			return -1
		case a.CgroupID > b.CgroupID:
			return 1
		}
		return 0
	})
	return json.MarshalIndent(f, "", "  ")
}

func decodeState(file string, data []byte) (map[uint64]*entry, error) {
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("state file %s: %w", file, err)
	}
	if f.Version != StateVersion {
		return nil, fmt.Errorf("state file %s: version %d: this vigil reads version %d (remove the file to start without state)", file, f.Version, StateVersion)
	}
	out := make(map[uint64]*entry, len(f.Containers))
	for _, c := range f.Containers {
		e := &entry{s: c.State, backoff: c.Backoff}
		if e.backoff == nil {
			e.backoff = map[Action]*backoff{}
		}
		st := c.Target
		e.t = Target{CgroupID: c.CgroupID, ContainerID: c.ContainerID, Container: st.Container, Mode: st.Mode,
			Policy: st.Policy, CgroupDir: st.CgroupDir, CgroupRel: st.CgroupRel, ViaNRI: st.ViaNRI}
		out[c.CgroupID] = e
	}
	return out, nil
}

// loadState reads file; a missing file is no state.
func loadState(file string) (map[uint64]*entry, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return map[uint64]*entry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state file: %w", err)
	}
	return decodeState(file, data)
}

// writeStateFile writes data to a temporary file next to file, syncs it
// and renames it over file, so a crash leaves the old or the new state.
func writeStateFile(file string, data []byte) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(file)+".tmp*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}
