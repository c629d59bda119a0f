//go:build !linux

package proxy

func isResourceExhausted(error) bool { return false }
