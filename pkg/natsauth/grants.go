package natsauth

import (
	"github.com/nats-io/jwt/v2"

	"github.com/chaperone-dev/chaperone/pkg/approvals"
	"github.com/chaperone-dev/chaperone/pkg/natsauth/natscred"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
)

// PolicyBucket is the key-value bucket the server publishes compiled
// policy in; workloads may read and watch it and nothing else of
// JetStream's API.
const PolicyBucket = "CHAPERONE_POLICY"

// policyStream is the stream behind PolicyBucket.
const policyStream = "KV_" + PolicyBucket

// policyRead is what reading and watching PolicyBucket takes: the stream's
// info, an ordered consumer (created, looked at, deleted, its flow control
// answered), and direct or API gets of one key.
var policyRead = []string{
	"$JS.API.STREAM.INFO." + policyStream,
	"$JS.API.STREAM.MSG.GET." + policyStream,
	"$JS.API.DIRECT.GET." + policyStream,
	"$JS.API.DIRECT.GET." + policyStream + ".>",
	"$JS.API.CONSUMER.CREATE." + policyStream,
	"$JS.API.CONSUMER.CREATE." + policyStream + ".>",
	"$JS.API.CONSUMER.INFO." + policyStream + ".>",
	"$JS.API.CONSUMER.DELETE." + policyStream + ".>",
	"$JS.FC." + policyStream + ".>",
}

// Permissions are the NATS rights of a workload. A pod's sidecar may
// publish its own session's events and blobs and approval requests, read
// the policy bucket, and receive replies, approval decisions and policy
// updates. A node agent may publish events and blobs of any session (the
// processes it sees belong to many pods) and read the policy bucket.
func Permissions(w Workload) jwt.Permissions {
	var p jwt.Permissions
	switch w.Kind {
	case KindNodeAgent:
		p.Pub.Allow.Add(natsbus.EventSubjectPrefix+"*", natsbus.BlobSubjectPrefix+"*")
	default:
		s := w.Session()
		p.Pub.Allow.Add(natsbus.EventSubject(s), natsbus.BlobSubject(s), approvals.RequestSubject(s))
		// Decisions are keyed by request id, which the sidecar picks; a
		// decision tells nothing a pod could use against another.
		p.Sub.Allow.Add(approvals.DecisionSubjectPrefix + ">")
	}
	p.Pub.Allow.Add(policyRead...)
	p.Sub.Allow.Add(natscred.InboxPrefix(w.PodUID)+".>", "$KV."+PolicyBucket+".>")
	return p
}
