// Package deploy holds the tests of plugind's deployment files: the
// Kubernetes manifests in kubernetes/, decoded strictly into the API types
// and checked against the configuration they ship, and the image build
// script build.sh, run as the Dockerfile runs it and its result served
// without a toolchain.
//
// It is a module of its own so that the server's module, which every
// plugin is built against, does not carry the Kubernetes API packages.
package deploy
