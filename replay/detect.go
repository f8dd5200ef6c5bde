package replay

import "vigil.dev/vigil/detector"

// NewEngine makes the detector a replay runs: the rules and model given
// (the embedded default rules unless noDefault, then ruleFiles; model may
// be nil), one shard so that events are seen in the log's order, and, as
// in the agent, nothing inspected in a cgroup before its first exec.
func NewEngine(ruleFiles []string, noDefault bool, model *detector.Model) (*detector.Engine, error) {
	return detector.New(detector.Config{RuleFiles: ruleFiles, NoDefaultRules: noDefault, Model: model, Shards: 1, FromFirstExec: true,
		Lists: map[string][]string{"allowed_resolvers": detector.SystemResolvers("")}})
}

// Comparison is how the verdicts of a replay compare with the recorded
// ones. Verdict ids depend only on the input, so the same rules and model
// reach the same ids.
type Comparison struct {
	Rules      int                `json:"rules"`
	Recorded   int                `json:"recorded"`
	Replayed   int                `json:"replayed"`
	Reproduced int                `json:"reproduced"`
	Same       bool               `json:"same"`
	Missing    []detector.Verdict `json:"missing,omitempty"` // recorded, not reached by the replay
	New        []detector.Verdict `json:"new,omitempty"`     // reached by the replay, not recorded
	EndOfTrace []detector.Verdict `json:"end_of_trace,omitempty"`
}

// compareVerdicts matches replayed verdicts with recorded ones by id.
// Verdicts of the final flush (partial model windows) are compared too but,
// when not recorded, listed apart: a live run that did not end (or did not
// flush) has no such verdicts.
func compareVerdicts(recorded []RecordedVerdict, replayed, flushed []detector.Verdict) *Comparison {
	res := &Comparison{Recorded: len(recorded), Replayed: len(replayed)}
	rec := map[string]bool{}
	for _, r := range recorded {
		rec[r.Verdict.ID] = true
	}
	got := map[string]bool{}
	for _, v := range replayed {
		got[v.ID] = true
		if rec[v.ID] {
			res.Reproduced++
		} else {
			res.New = append(res.New, v)
		}
	}
	for _, v := range flushed {
		if rec[v.ID] {
			got[v.ID] = true
			res.Reproduced++
			res.Replayed++
		} else {
			res.EndOfTrace = append(res.EndOfTrace, v)
		}
	}
	for _, r := range recorded {
		if !got[r.Verdict.ID] {
			res.Missing = append(res.Missing, r.Verdict)
		}
	}
	res.Same = len(res.Missing) == 0 && len(res.New) == 0
	return res
}
