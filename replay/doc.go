// Package replay reads a node's audit log (package audit) back for people
// and tools. It rebuilds one container's timeline from the records (its
// process tree with every exec, the files and network peers it touched,
// the verdicts, actions, lifecycle and gaps recorded about it), runs the
// recorded events and resource samples through the detector again and
// compares the verdicts it reaches with the recorded ones by id; it lists
// the containers of a log; and it selects records by container, pod, time,
// kind and syscall and writes them as text lines or as JSON lines for log
// shippers.
//
// It only reads: opening, verifying and writing logs belong to package
// audit, rules and models to package detector. It needs no privilege
// beyond reading the log's directory.
package replay
