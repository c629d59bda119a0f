package natsauth_test

import (
	"testing"

	"github.com/chaperone-dev/chaperone/pkg/natsauth"
	"github.com/chaperone-dev/chaperone/pkg/policy"
)

// The grants name the bucket the policy is distributed through; the two
// packages keep their own constant so that the callout does not link CEL.
func TestPolicyBucketMatchesDistribution(t *testing.T) {
	if natsauth.PolicyBucket != policy.Bucket {
		t.Fatalf("natsauth grants bucket %q, policy distributes through %q", natsauth.PolicyBucket, policy.Bucket)
	}
}
