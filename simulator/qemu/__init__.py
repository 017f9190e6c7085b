"""The simulator's QEMU hypervisor: real guests for the VMs the API deploys (off by default)."""
