package natsauth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chaperone-dev/chaperone/pkg/event"
	"github.com/chaperone-dev/chaperone/pkg/natsauth"
	"github.com/chaperone-dev/chaperone/pkg/natsbus"
)

// FuzzParseWorkload feeds token claims to the identity parser: it must
// never panic, and whatever it accepts must grant subjects of one valid
// session, never a wildcard across sessions.
func FuzzParseWorkload(f *testing.F) {
	const sub = "system:serviceaccount:agents:coder"
	f.Add(sub, []byte(`{"kubernetes.io":{"namespace":"agents","pod":{"name":"p","uid":"0b1e8a3c-5f0e-4c55"},"serviceaccount":{"name":"coder","uid":"u"},"node":{"name":"n1"}}}`))
	f.Add(sub, []byte(`{"kubernetes.io":{"namespace":"agents","serviceaccount":{"name":"coder"}}}`))
	f.Add(sub, []byte(`{"kubernetes.io":{"namespace":"agents","pod":{"name":"p","uid":">"},"serviceaccount":{"name":"coder"}}}`))
	f.Add(sub, []byte(`{"kubernetes.io":{"namespace":"agents","pod":{"name":"p","uid":"a.b"},"serviceaccount":{"name":"coder"}}}`))
	f.Add("system:serviceaccount:x:y", []byte(`{"kubernetes.io":null}`))
	f.Add("", []byte(`[]`))
	f.Add(sub, []byte(`{"kubernetes.io":{"namespace":1}}`))
	agents := []natsauth.ServiceAccountRef{{Namespace: "agents", Name: "coder"}}
	f.Fuzz(func(t *testing.T, subject string, payload []byte) {
		for _, na := range [][]natsauth.ServiceAccountRef{nil, agents} {
			w, err := natsauth.ParseWorkload(subject, payload, time.Now(), na)
			if err != nil {
				continue
			}
			if event.ValidSession(w.PodUID) != nil {
				t.Fatalf("accepted pod uid %q", w.PodUID)
			}
			if w.Subject != subject || w.Namespace == "" || w.ServiceAccount == "" || w.Pod == "" {
				t.Fatalf("accepted incomplete workload %+v", w)
			}
			p := natsauth.Permissions(w)
			for _, s := range p.Pub.Allow {
				rest, ok := strings.CutPrefix(s, natsbus.EventSubjectPrefix)
				if ok && w.Kind == natsauth.KindPod && rest != w.PodUID {
					t.Fatalf("pod granted %s", s)
				}
			}
		}
	})
}
