"""The operations the simulator answers, by the spec's operationId. Every other operation of the
spec answers 501, naming it."""

from __future__ import annotations

from collections.abc import Callable

from stackfleet.simulator.exoscale import (
    instances,
    private_networks,
    resources,
    security_groups,
)
from stackfleet.simulator.exoscale.call import Call
from stackfleet.simulator.state import Doc

Handler = Callable[[Call], Doc]

HANDLERS: dict[str, Handler] = {
    "list-zones": resources.list_zones,
    "list-templates": resources.list_templates,
    "get-template": resources.get_template,
    "list-instance-types": resources.list_instance_types,
    "get-instance-type": resources.get_instance_type,
    "get-operation": resources.get_operation,
    "create-instance": instances.create_instance,
    "list-instances": instances.list_instances,
    "get-instance": instances.get_instance,
    "update-instance": instances.update_instance,
    "start-instance": instances.start_instance,
    "stop-instance": instances.stop_instance,
    "reboot-instance": instances.reboot_instance,
    "delete-instance": instances.delete_instance,
    "create-security-group": security_groups.create_security_group,
    "list-security-groups": security_groups.list_security_groups,
    "get-security-group": security_groups.get_security_group,
    "delete-security-group": security_groups.delete_security_group,
    "add-rule-to-security-group": security_groups.add_rule_to_security_group,
    "delete-rule-from-security-group": security_groups.delete_rule_from_security_group,
    "create-anti-affinity-group": resources.create_anti_affinity_group,
    "list-anti-affinity-groups": resources.list_anti_affinity_groups,
    "get-anti-affinity-group": resources.get_anti_affinity_group,
    "delete-anti-affinity-group": resources.delete_anti_affinity_group,
    "register-ssh-key": resources.register_ssh_key,
    "list-ssh-keys": resources.list_ssh_keys,
    "get-ssh-key": resources.get_ssh_key,
    "delete-ssh-key": resources.delete_ssh_key,
    "create-private-network": private_networks.create_private_network,
    "list-private-networks": private_networks.list_private_networks,
    "get-private-network": private_networks.get_private_network,
    "update-private-network": private_networks.update_private_network,
    "delete-private-network": private_networks.delete_private_network,
}

# Public on the real API too: the official client sends list-zones without credentials.
UNAUTHENTICATED = frozenset({"list-zones"})
