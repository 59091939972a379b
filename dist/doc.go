// Package dist holds what ships dms to those who run it rather than build
// it: the systemd unit (dms.service) here, and the tests of the container
// image that the Dockerfile at the repository's root builds. It has no
// code of its own.
package dist
