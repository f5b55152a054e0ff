// Phone farms: old phones as a k3s cluster, from an inventory.
package phonefarm
