//go:build !linux

package resources

func lockOwnerPID(string) int { return 0 }
