package webhook

import corev1 "k8s.io/api/core/v1"

// StampTemplate stamps the requested-by annotations on the pod template of
// a workload (Deployment, StatefulSet, Job, CronJob, ReplicaSet, …) that
// opted in, so the pods later created from it carry them. A template that a
// built-in controller writes (a ReplicaSet of a Deployment, a Job of a
// CronJob, a revision update) keeps the annotations it already carries. It
// reports whether anything changed.
func StampTemplate(tmpl *corev1.PodTemplateSpec, in Input) bool {
	if !Selected(tmpl.Annotations, in.NamespaceLabels) {
		return false
	}
	before := [2]string{tmpl.Annotations[AnnotationRequestedBy], tmpl.Annotations[AnnotationRequestedByGroups]}
	_, hadGroups := tmpl.Annotations[AnnotationRequestedByGroups]
	stampRequester(&tmpl.ObjectMeta, in.User)
	after := [2]string{tmpl.Annotations[AnnotationRequestedBy], tmpl.Annotations[AnnotationRequestedByGroups]}
	_, hasGroups := tmpl.Annotations[AnnotationRequestedByGroups]
	return before != after || hadGroups != hasGroups
}
