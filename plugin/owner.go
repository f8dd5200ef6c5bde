package plugin

import (
	"strings"
)

// Labels and annotations that Kubernetes controllers and the kubelet set
// on the pods they make.
const (
	labelPodTemplateHash = "pod-template-hash"                  // ReplicaSet (of a Deployment)
	labelRevisionHash    = "controller-revision-hash"           // StatefulSet, DaemonSet
	labelStatefulSetPod  = "statefulset.kubernetes.io/pod-name" // StatefulSet
	labelTemplateGen     = "pod-template-generation"            // DaemonSet
	labelJobName         = "batch.kubernetes.io/job-name"       // Job (1.27+)
	labelJobNameLegacy   = "job-name"                           // Job (older)
	annotationConfigSrc  = "kubernetes.io/config.source"        // kubelet: "file" or "http" for static pods, "api"
)

// inferOwner names the workload that made a pod, from what the runtime
// passes (the pod's name, labels and annotations): NRI and the CRI carry
// no owner references. Kubernetes controllers name their pods and label
// them in known ways:
//   - a Deployment's ReplicaSet is named DEPLOYMENT-HASH and its pods
//     RS-SUFFIX, with the label pod-template-hash=HASH: "Deployment";
//     a ReplicaSet made by hand carries the label too but its name does
//     not end in the hash: "ReplicaSet";
//   - a StatefulSet's pods are SET-ORDINAL, with
//     statefulset.kubernetes.io/pod-name set to the pod's name;
//   - a DaemonSet's pods are SET-SUFFIX, with controller-revision-hash and
//     pod-template-generation;
//   - a Job's pods carry its name in batch.kubernetes.io/job-name (or
//     job-name);
//   - static pods (kubelet's manifests) have kubernetes.io/config.source
//     "file" or "http": the node owns them.
//
// kind and name are empty when none of these holds (a bare pod). They are
// what the names say, not what the API server knows: a pod whose labels
// were set by hand to look like a controller's is named as that
// controller's.
func inferOwner(pod, node string, labels, ann map[string]string) (kind, name string) {
	if src := ann[annotationConfigSrc]; src == "file" || src == "http" {
		return "Node", node
	}
	if h := labels[labelPodTemplateHash]; h != "" {
		rs, ok := trimLastDash(pod)
		if !ok {
			return "", ""
		}
		if dep, found := strings.CutSuffix(rs, "-"+h); found && dep != "" {
			return "Deployment", dep
		}
		if truncated(pod) {
			return "", "" // a Deployment's or a ReplicaSet's, its name cut
		}
		return "ReplicaSet", rs
	}
	if p := labels[labelStatefulSetPod]; p != "" && p == pod && labels[labelRevisionHash] != "" {
		if set, ok := trimLastDash(pod); ok {
			return "StatefulSet", set
		}
	}
	if labels[labelRevisionHash] != "" && labels[labelTemplateGen] != "" {
		if set, ok := trimLastDash(pod); ok {
			if truncated(pod) {
				return "DaemonSet", "" // its name cut
			}
			return "DaemonSet", set
		}
	}
	job := labels[labelJobName]
	if job == "" {
		job = labels[labelJobNameLegacy]
	}
	if job != "" {
		return "Job", job
	}
	return "", ""
}

// truncated reports whether a controller's pod name may hold its owner's
// name cut short: the API server cuts a generateName to 58 characters
// before it adds 5 random ones, so a name of 63 may have lost the end of
// the owner's name (and a Deployment's hash with it).
func truncated(pod string) bool { return len(pod) >= 63 }

// trimLastDash returns s up to its last '-', when something precedes and
// follows it.
func trimLastDash(s string) (string, bool) {
	i := strings.LastIndexByte(s, '-')
	if i <= 0 || i == len(s)-1 {
		return "", false
	}
	return s[:i], true
}
