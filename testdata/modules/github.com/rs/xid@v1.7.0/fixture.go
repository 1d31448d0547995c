package xid

// FixtureVersion marks this copy: plugind's tests serve xid v1.6.0's source
// as v1.7.0 from a file-based proxy, to stand for a version newer than the
// one the server links. It is not the published v1.7.0.
const FixtureVersion = "v1.7.0"
