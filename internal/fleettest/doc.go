// Package fleettest holds the fleet test: plugind run as a fleet on
// loopback, as it is deployed behind a load balancer. A real PostgreSQL
// (internal/pgtest) holds the tasks, three replicas serve one prebuilt
// artifact cache in prebuilt mode, and HAProxy (internal/haproxytest)
// balances over them, health-checking /readyz. Under load each replica in
// turn is stopped with SIGTERM and started again, and no request fails;
// tasks started on one replica are read and cancelled through the others,
// and the tasks of a replica killed with SIGKILL read interrupted within
// the lease.
//
// The test carries the build tag fleet, so that it runs on its own (it
// takes over 30 s and its figures mean more on a machine that runs
// nothing else): make test runs
//
//	go test -tags fleet -race -count=1 ./internal/fleettest/
package fleettest
