package simkit

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseFraction parses a rate from 0 to 1, or a percentage ("20%").
func ParseFraction(s string) (float64, error) {
	scale := 1.0
	if p, ok := strings.CutSuffix(s, "%"); ok {
		s, scale = p, 0.01
	}
	rate, err := strconv.ParseFloat(s, 64)
	if err != nil || rate*scale < 0 || rate*scale > 1 {
		return 0, fmt.Errorf("rate must be a number from 0 to 1 (or 0%% to 100%%)")
	}
	return rate * scale, nil
}
