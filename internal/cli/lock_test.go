package cli

import (
	"strings"
	"testing"
)

func TestLockFarm(t *testing.T) {
	unlock, err := lockFarm("farm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockFarm("./farm.yaml"); err == nil || !strings.Contains(err.Error(), "another phonefarm command") {
		t.Errorf("second lock on the same inventory: got %v, want refused", err)
	}
	other, err := lockFarm("other.yaml")
	if err != nil {
		t.Errorf("a different inventory: %v", err)
	} else {
		other()
	}
	unlock()
	again, err := lockFarm("farm.yaml")
	if err != nil {
		t.Errorf("after unlock: %v", err)
	} else {
		again()
	}
}
