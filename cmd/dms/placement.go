package main

import (
	"fmt"
	"strings"

	"github.com/dms-project/dms/orchestrator"
)

// parseLabels reads --label flags: KEY=VALUE each, or "none" alone for no
// labels at all.
func parseLabels(vals []string) (orchestrator.Labels, error) {
	labels := orchestrator.Labels{}
	if len(vals) == 1 && strings.EqualFold(strings.TrimSpace(vals[0]), "none") {
		return labels, nil
	}
	for _, v := range vals {
		k, val, err := orchestrator.ParseLabel(strings.TrimSpace(v))
		if err != nil {
			return nil, badValue("label", v, err)
		}
		if old, dup := labels[k]; dup {
			return nil, badValue("label", v, fmt.Errorf("%s is given twice (%s=%s before): a key takes one value", k, k, old))
		}
		labels[k] = val
	}
	if len(labels) > orchestrator.MaxLabels {
		return nil, usagef("invalid value for --label: %d labels, at most %d", len(labels), orchestrator.MaxLabels)
	}
	return labels, nil
}

// describeLabels lists labels, or says there are none.
func describeLabels(l orchestrator.Labels) string {
	if len(l) == 0 {
		return "none"
	}
	return l.String()
}

// describePlacement lists a job's constraints and preferences, "" when it
// has none.
func describePlacement(constraints, prefer []orchestrator.Constraint) string {
	var parts []string
	for _, c := range constraints {
		parts = append(parts, c.String())
	}
	for _, c := range prefer {
		parts = append(parts, "prefer "+c.String())
	}
	return strings.Join(parts, "; ")
}
