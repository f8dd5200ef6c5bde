package plugin

import "testing"

func TestInferOwner(t *testing.T) {
	static := map[string]string{annotationConfigSrc: "file"}
	api := map[string]string{annotationConfigSrc: "api"}
	for _, tc := range []struct {
		name, pod  string
		labels     map[string]string
		ann        map[string]string
		kind, want string
	}{
		{"deployment", "web-7d9f8c6b5-x2x4z", map[string]string{"app": "web", labelPodTemplateHash: "7d9f8c6b5"}, api, "Deployment", "web"},
		{"deployment with dashes", "my-api-v2-5f6d7c8b9-abcde", map[string]string{labelPodTemplateHash: "5f6d7c8b9"}, api, "Deployment", "my-api-v2"},
		{"replicaset by hand", "frontend-9zq7k", map[string]string{labelPodTemplateHash: "abc"}, nil, "ReplicaSet", "frontend"},
		{"statefulset", "db-2", map[string]string{labelRevisionHash: "db-6c9d", labelStatefulSetPod: "db-2"}, api, "StatefulSet", "db"},
		{"statefulset label of another pod", "db-2", map[string]string{labelRevisionHash: "db-6c9d", labelStatefulSetPod: "db-3"}, api, "", ""},
		{"daemonset", "vigil-k8w2p", map[string]string{labelRevisionHash: "5b8d", labelTemplateGen: "3"}, api, "DaemonSet", "vigil"},
		{"job", "backup-28391-q9x8d", map[string]string{labelJobName: "backup-28391"}, api, "Job", "backup-28391"},
		{"job, older label", "migrate-q9x8d", map[string]string{labelJobNameLegacy: "migrate"}, api, "Job", "migrate"},
		{"static pod", "etcd-node1", nil, static, "Node", "node1"},
		{"static pod over labels", "web-node1", map[string]string{labelPodTemplateHash: "x"}, static, "Node", "node1"},
		{"bare pod", "debug", map[string]string{"app": "debug"}, api, "", ""},
		{"no labels, no annotations", "debug", nil, nil, "", ""},
		{"hash label on a name without a dash", "web", map[string]string{labelPodTemplateHash: "h"}, api, "", ""},
		{"name ending in a dash", "web-", map[string]string{labelRevisionHash: "h", labelTemplateGen: "1"}, api, "", ""},
		// a Deployment name of 52: RS name 52+1+10, cut to 58 with the dash, then 5 random
		{"long deployment, name cut", "payments-reconciliation-worker-eu-west-1-primary-pool-7d9fx2x4z",
			map[string]string{labelPodTemplateHash: "7d9f8c6b5d"}, api, "", ""},
		{"long deployment, hash whole", "payments-reconciliation-worker-eu-west-1-ab-7d9f8c6b5d-x2x4z",
			map[string]string{labelPodTemplateHash: "7d9f8c6b5d"}, api, "Deployment", "payments-reconciliation-worker-eu-west-1-ab"},
		{"long daemonset, name cut", "node-exporter-with-a-very-long-name-for-the-cluster-nodes-k8w2p",
			map[string]string{labelRevisionHash: "5b8d", labelTemplateGen: "3"}, api, "DaemonSet", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind, name := inferOwner(tc.pod, "node1", tc.labels, tc.ann)
			if kind != tc.kind || name != tc.want {
				t.Errorf("inferOwner(%q, %v, %v) = %q %q, want %q %q", tc.pod, tc.labels, tc.ann, kind, name, tc.kind, tc.want)
			}
		})
	}
}
