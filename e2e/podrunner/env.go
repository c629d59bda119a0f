package podrunner

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// defaultPath is the PATH of a container that sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// env is c's environment as the kubelet builds it: HOSTNAME, the
// container's variables in order with $(VAR) references expanded and
// downward-API values filled in, paths under its mounts rewritten.
func (r *run) env(c *corev1.Container) ([]string, error) {
	m := r.mapper(c)
	vars := map[string]string{"PATH": defaultPath, "HOSTNAME": r.pod.Name}
	order := []string{"PATH", "HOSTNAME"}
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	if len(c.EnvFrom) > 0 {
		return nil, fmt.Errorf("%w: container %s: envFrom", ErrUnsupported, c.Name)
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			set(e.Name, m.path(expand(e.Value, vars)))
		case e.ValueFrom.FieldRef != nil:
			v, err := r.field(e.ValueFrom.FieldRef.FieldPath)
			if err != nil {
				return nil, fmt.Errorf("container %s env %s: %w", c.Name, e.Name, err)
			}
			set(e.Name, v)
		default:
			return nil, fmt.Errorf("%w: container %s env %s: only values and fieldRef", ErrUnsupported, c.Name, e.Name)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// expand replaces $(VAR) with vars' value as Kubernetes does: $$ escapes,
// an unknown reference stays as written.
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '(':
			if j := strings.IndexByte(s[i+2:], ')'); j >= 0 {
				name := s[i+2 : i+2+j]
				if v, ok := vars[name]; ok {
					b.WriteString(v)
					i += 2 + j
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mounts maps a container's mount paths to host directories.
type mounts []mount

type mount struct{ path, host string }

func (r *run) mapper(c *corev1.Container) mounts {
	var ms mounts
	for _, vm := range c.VolumeMounts {
		dir, ok := r.volumeDirs[vm.Name]
		if !ok {
			continue
		}
		if vm.SubPath != "" {
			dir = filepath.Join(dir, filepath.Clean("/"+vm.SubPath))
		}
		ms = append(ms, mount{path: filepath.Clean(vm.MountPath), host: dir})
	}
	// Longest first, so nested mounts win.
	slices.SortFunc(ms, func(a, b mount) int { return cmp.Compare(len(b.path), len(a.path)) })
	return ms
}

// path rewrites every occurrence of a mount path in s that stands as a
// path of its own (at the start or after '=', ':', ',' or a space, and
// followed by its end, '/' or one of those) to the host directory.
func (ms mounts) path(s string) string {
	for _, m := range ms {
		var b strings.Builder
		rest := s
		for {
			i := strings.Index(rest, m.path)
			if i < 0 {
				b.WriteString(rest)
				break
			}
			end := i + len(m.path)
			before := i == 0 || strings.ContainsRune("=:, ", rune(rest[i-1]))
			after := end == len(rest) || strings.ContainsRune("/=:, ", rune(rest[end]))
			b.WriteString(rest[:i])
			if before && after {
				b.WriteString(m.host)
			} else {
				b.WriteString(m.path)
			}
			rest = rest[end:]
		}
		s = b.String()
	}
	return s
}
