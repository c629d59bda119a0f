package main

import "time"

// freeSidecar bounds what a sidecar that cost no CPU at all could reach on
// this machine when the server's ingest runs on the same cores, as it does
// here (in a cluster it runs elsewhere). nginx's run tells what a request
// costs everything but the proxy: cores/(nginx's req/s) minus nginx's own
// CPU. Such a sidecar would spend that plus the server's srv per request,
// so its req/s is at most cores/(rest+srv). With conns connections in a
// closed loop the mean latency is conns/(req/s) (Little's law), so its
// mean added latency over direct would be at least latency times nginx's.
func freeSidecar(cores int, direct, nginx wrkResult, nginxCPU, srv time.Duration) (throughput, latency float64) {
	if nginx.rps == 0 || direct.rps == 0 {
		return 0, 0
	}
	total := time.Duration(float64(cores) * float64(time.Second) / nginx.rps)
	rest := total - nginxCPU
	if rest+srv <= 0 {
		return 0, 0
	}
	freeRPS := float64(cores) * float64(time.Second) / float64(rest+srv)
	addedFree := 1/freeRPS - 1/direct.rps
	addedNginx := 1/nginx.rps - 1/direct.rps
	return freeRPS / nginx.rps, ratio(addedFree, addedNginx)
}
