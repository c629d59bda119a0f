package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// unscheduled selects pods that no node has been chosen for.
const unscheduled = "spec.nodeName="

// AddNode registers a Node object called name that reports Ready, with
// room for 110 pods. There is no kubelet behind it. The first call also
// starts the binder: from then until Stop, every pod without spec.nodeName
// is bound to that first node, standing in for kube-scheduler.
func (c *Cluster) AddNode(ctx context.Context, name string) error {
	cs, err := kubernetes.NewForConfig(c.restConfig)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if err := c.registerNode(ctx, cs, name, 0); err != nil {
		return err
	}
	c.binderStart.Do(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.stopped {
			return
		}
		bctx, cancel := context.WithCancel(context.Background())
		c.stopBinder, c.binderDone = cancel, make(chan struct{})
		go func() {
			defer close(c.binderDone)
			c.bindLoop(bctx, cs, name)
		}()
	})
	return nil
}

// nodeStatus is the status of a Ready node at 127.0.0.1 with room for 110
// pods; a kubelet port other than 0 names its kubelet endpoint.
func nodeStatus(kubeletPort int32) corev1.NodeStatus {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	now := metav1.Now()
	msg := "registered by the e2e/kube harness; no kubelet"
	if kubeletPort != 0 {
		msg = "registered by the e2e/kube harness; stand-in kubelet"
	}
	return corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "ChaperoneTestBed",
			Message: msg, LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: kubeletPort}},
	}
}

// bindLoop lists the unscheduled pods, binds them, then watches for more;
// it starts over when the watch ends, until ctx is done.
func (c *Cluster) bindLoop(ctx context.Context, cs kubernetes.Interface, node string) {
	pods := cs.CoreV1().Pods(metav1.NamespaceAll)
	for ctx.Err() == nil {
		list, err := pods.List(ctx, metav1.ListOptions{FieldSelector: unscheduled})
		if err != nil {
			c.binderBackoff(ctx, err)
			continue
		}
		for i := range list.Items {
			c.bind(ctx, cs, &list.Items[i], node)
		}
		w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: unscheduled, ResourceVersion: list.ResourceVersion})
		if err != nil {
			c.binderBackoff(ctx, err)
			continue
		}
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			if pod, ok := ev.Object.(*corev1.Pod); ok {
				c.bind(ctx, cs, pod, node)
			}
		}
		w.Stop()
	}
}

func (c *Cluster) binderBackoff(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	c.logger.Warn("binder: list or watch pods", logKeyErr, err)
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
}

// bind assigns pod to node through the pods/binding subresource, as
// kube-scheduler does.
func (c *Cluster) bind(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, node string) {
	if pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
		return
	}
	err := cs.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
	switch {
	case err == nil:
		c.logger.Info("bound pod", logKeyPod, pod.Namespace+"/"+pod.Name, logKeyNode, node)
	case apierrors.IsConflict(err), apierrors.IsNotFound(err), ctx.Err() != nil:
		// Already bound, or gone: nothing to do.
	default:
		c.logger.Warn("bind pod", logKeyPod, pod.Namespace+"/"+pod.Name, logKeyErr, err)
	}
}
