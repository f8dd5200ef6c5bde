package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"vigil.dev/vigil/agentctl"
	"vigil.dev/vigil/event"
)

func init() {
	register("status", "what the running agent monitors: containers, counters, drops", runStatus)
}

const statusUsage = `Usage: vigil status [OPTIONS]

Asks the running 'vigil agent' (over its control socket) what it does: each
container it knows with its pod, seccomp profile and mode, whether it is
traced, and the tracer's exact counters (seen = emitted + dropped); the last
stopped containers with their final counters; the seccomp notify server's
fds and decisions; the verdicts and the records lost; and what the response
ladder has in force (throttled, denied syscalls or connections, frozen),
since when. Needs root (the socket is mode 0600).

Example:
  sudo vigil status
  sudo vigil status --json | jq '.containers[] | select(.dropped > 0)'

Options:
`

func runStatus(args []string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	sock := fs.String("socket", agentctl.DefaultSocket, "the agent's control `SOCKET`")
	asJSON := fs.Bool("json", false, "print the full status as JSON")
	fs.Usage = usageFunc(fs, statusUsage)
	if status, done := parseFlags(fs, args); done {
		return status
	}
	resp, err := agentctl.Call(*sock, agentctl.Request{Op: agentctl.OpStatus})
	if err != nil {
		return fail("status: %v", err)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(resp.Status); err != nil {
			return fail("status: %v", err)
		}
		return 0
	}
	printStatus(os.Stdout, resp.Status)
	return 0
}

func printStatus(w io.Writer, st *agentctl.Status) {
	conn := "disconnected (retrying)"
	if st.Connected {
		conn = "connected"
	}
	fmt.Fprintf(w, "agent since %s, runtime %s (%d connections), %d events written\n",
		st.Since.Format("2006-01-02 15:04:05"), conn, st.Connections, st.Events)
	fmt.Fprintf(w, "seccomp notify: %d fds open, %d received, %d decisions\n", st.NotifyOpen, st.NotifyFds, st.NotifyAnswer)
	fmt.Fprintf(w, "verdicts %d, actions %d, records lost %d (queue %d), reloads %d; %d batches waiting for the pipeline\n",
		st.Verdicts, st.Actions, st.Lost, st.QueueDropped, st.Reloads, st.QueueDepth)
	for _, a := range st.ActionStats {
		fmt.Fprintf(w, "action %s: %d in force (%d failed), p50 %v p99 %v from the triggering event\n", a.Action, a.Count, a.Failed, a.P50, a.P99)
	}
	if sm := st.Sampling; sm != nil {
		fmt.Fprintf(w, "sampling: %d hot, %d suspect every %v, %d idle every %v or more (oldest %v), budget %d/s, %d samples, %d deferred\n",
			sm.Hot, sm.Suspect, sm.FullEvery, sm.Idle, sm.IdleEvery, sm.OldestAge.Round(time.Millisecond), sm.Budget, sm.Samples, sm.Deferred)
		fmt.Fprintf(w, "sampling CPU: %.3f of %.3f cores (a cpu.stat sample %v, a full one %v); worst periods in the last 10-20 s: hot %v, idle %v\n",
			sm.CPU, sm.CPUBudget, sm.StatCost.Round(time.Microsecond), sm.FullCost.Round(time.Microsecond),
			sm.FullPeriod.Round(time.Millisecond), sm.IdlePeriod.Round(time.Millisecond))
	}
	if st.DecisionP99 > 0 {
		fmt.Fprintf(w, "detector decision p99 %v per event; delivery p99 %v (kernel timestamp to decision)\n", st.DecisionP99, st.DeliveryP99)
	}
	if st.ReloadError != "" {
		fmt.Fprintf(w, "last reload rejected: %s\n", event.Printable(st.ReloadError))
	}
	if st.EventsError != "" {
		fmt.Fprintf(w, "event output error: %s\n", event.Printable(st.EventsError))
	}
	for _, o := range st.Outputs {
		fmt.Fprintf(w, "output %s %s: %d bytes written, %d rotations, %d lines lost", o.Name, event.Printable(o.Path), o.Bytes, o.Rotations, o.LostLines)
		if o.Error != "" {
			fmt.Fprintf(w, "; CANNOT WRITE: %s", event.Printable(o.Error))
		}
		fmt.Fprintln(w)
	}
	if st.AuditLost > 0 || st.AuditFull || st.AuditBytes > 0 {
		fmt.Fprintf(w, "audit log: %d bytes written, %d records lost", st.AuditBytes, st.AuditLost)
		if st.AuditFull {
			fmt.Fprint(w, "; DISK FULL")
		}
		fmt.Fprintln(w)
	}
	if h := st.AuditHead; h != nil {
		fmt.Fprintf(w, "audit head: record %d, segment %d, hash %s (signed %s)\n", h.Index, h.Segment, h.Hash, h.Time.Format("15:04:05"))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nNAMESPACE\tPOD\tCONTAINER\tID\tSTATE\tMONITOR\tSECCOMP\tMODE\tCGROUP\tSEEN\tEMITTED\tDROPPED\tTHROTTLED")
	row := func(c agentctl.ContainerStatus) {
		mon := "no"
		switch {
		case c.Forced:
			mon = "forced"
		case c.Monitor:
			mon = "yes"
		}
		id := c.ID
		if len(id) > 12 {
			id = id[:12]
		}
		// Names come from the pod's annotations and the runtime: a tab or
		// newline in them must not make columns or rows.
		p := event.Printable
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", p(c.Namespace), p(c.Pod), p(c.Name), p(id), p(c.State), mon,
			p(dash(c.Seccomp)), p(dash(c.Mode)), c.CgroupID, c.Seen, c.Emitted, c.Dropped, c.Throttled)
	}
	for _, c := range st.Containers {
		row(c)
	}
	for _, c := range st.Finished {
		row(c)
	}
	tw.Flush()
	for _, c := range st.Containers {
		name := event.Printable(c.Pod) + "/" + event.Printable(c.Name)
		if c.Class != "" {
			fmt.Fprintf(w, "%s: tracing class %s", name, event.Printable(c.Class))
			if strings.Contains(c.Class, "block") {
				fmt.Fprintf(w, ", processes stopped %d times to lose nothing", c.Stopped)
			}
			fmt.Fprintln(w)
		}
		if strings.HasPrefix(c.Model, "rules only") {
			fmt.Fprintf(w, "%s: %s\n", name, event.Printable(c.Model))
		}
	}
	if len(st.InForce) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nIN FORCE\tCONTAINER\tCGROUP\tSINCE\tDETAIL")
		for _, f := range st.InForce {
			id := f.ContainerID
			if len(id) > 12 {
				id = id[:12]
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", f.Action, event.Printable(dash(id)), f.CgroupID, f.Since.Format("15:04:05"), event.Printable(dash(f.Detail)))
		}
		tw.Flush()
	}
	for _, id := range st.Rejected {
		fmt.Fprintf(w, "rejected by the runtime (seccomp adjustment refused): %s\n", event.Printable(id))
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
