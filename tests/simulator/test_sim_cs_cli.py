"""The `cs` client's command line (PyPI `cs`, unmodified) against `stackfleet simulator serve`.

Real: the `cs` CLI in its own processes (its signing with signatureVersion 3, GET, job
polling), the simulator CLI as a separate OS process, HTTP over loopback, SQLite state in a
file. Every command a tool's inventory and a VM's life need, as a user would type them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sf_serve import serve

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl demo"
CS = Path(sys.executable).with_name("cs")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_cs_cli_end_to_end(tmp_path: Path) -> None:
    with serve(tmp_path / "cloud.db") as served:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),  # no ~/.cloudstack.ini of the user's
            **served,
            "CLOUDSTACK_POLL_INTERVAL": "0.1",
            "CLOUDSTACK_THEME": "",
        }

        def cs(command: str, *args: str, ok: bool = True) -> dict[str, Any]:
            proc = subprocess.run(
                [str(CS), command, *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert (proc.returncode == 0) == ok, (command, proc.stdout, proc.stderr)
            return json.loads(proc.stdout) if proc.stdout.strip() else {}

        zone = next(z for z in cs("listZones")["zone"] if z["name"] == "sim-gva-1")
        templates = cs("listTemplates", "templatefilter=executable", f"zoneid={zone['id']}")
        template = next(
            t for t in templates["template"] if t["name"] == "Flatcar Container Linux stable"
        )
        offerings = {o["name"]: o for o in cs("listServiceOfferings")["serviceoffering"]}
        # listTemplates without templatefilter: 431, as CloudStack answers.
        assert cs("listTemplates", ok=False)["listtemplatesresponse"]["errorcode"] == 431

        group = cs("createSecurityGroup", "name=web")["securitygroup"]
        cs(
            "authorizeSecurityGroupIngress",
            "securitygroupname=web",
            "protocol=tcp",
            "startport=22",
            "endport=22",
            "cidrlist=0.0.0.0/0",
        )
        cs("registerSSHKeyPair", "name=demo", f"publickey={PUBLIC_KEY}")
        deployed = cs(
            "deployVirtualMachine",
            f"zoneid={zone['id']}",
            f"templateid={template['id']}",
            f"serviceofferingid={offerings['Small']['id']}",
            "name=web-1",
            "keypair=demo",
            f"securitygroupids={group['id']}",
            "rootdisksize=20",
        )["virtualmachine"]
        assert deployed["state"] == "Running"
        vm_id = deployed["id"]

        volumes = cs("listVolumes", f"virtualmachineid={vm_id}")["volume"]
        assert [(v["type"], v["size"]) for v in volumes] == [("ROOT", 20 << 30)]
        nics = cs("listNics", f"virtualmachineid={vm_id}")["nic"]
        assert nics[0]["ipaddress"] == deployed["nic"][0]["ipaddress"]
        assert cs("listDomains")["domain"][0]["name"] == "ROOT"
        assert cs("listProjects") == {}
        assert cs("listUsers")["user"][0]["username"] == "stackfleet"
        ostypes = {o["id"] for o in cs("listOsTypes")["ostype"]}
        assert template["ostypeid"] in ostypes
        assert cs("listHypervisors")["hypervisor"] == [{"name": "Simulator"}]
        assert cs("listRegions")["region"][0]["name"] == "Local"
        assert "Custom" in {d["name"] for d in cs("listDiskOfferings")["diskoffering"]}
        assert cs("listVPCs") == {}
        assert cs("listLoadBalancerRules") == {}
        hosts = cs("listHosts", ok=False)["listhostsresponse"]
        assert hosts["errorcode"] == 432
        apis = {a["name"] for a in cs("listApis")["api"]}
        assert {"listVolumes", "changeServiceForVirtualMachine"} <= apis
        assert "listHosts" not in apis
        # An unknown command: 401, exactly as CloudStack answers it.
        assert cs("listNoSuchThings", ok=False)["listnosuchthingsresponse"]["errorcode"] == 401

        cs("rebootVirtualMachine", f"id={vm_id}")
        refused = cs(
            "changeServiceForVirtualMachine",
            f"id={vm_id}",
            f"serviceofferingid={offerings['Medium']['id']}",
            ok=False,
        )["changeserviceforvirtualmachineresponse"]
        assert refused["errorcode"] == 431
        assert "make sure the virtual machine is stopped" in refused["errortext"]
        cs("stopVirtualMachine", f"id={vm_id}")
        changed = cs(
            "changeServiceForVirtualMachine",
            f"id={vm_id}",
            f"serviceofferingid={offerings['Medium']['id']}",
        )["virtualmachine"]
        assert (changed["serviceofferingname"], changed["memory"]) == ("Medium", 4096)
        renamed = cs("updateVirtualMachine", f"id={vm_id}", "displayname=web one")
        assert renamed["virtualmachine"]["displayname"] == "web one"
        cs("startVirtualMachine", f"id={vm_id}")
        cs(
            "createTags",
            "resourcetype=UserVm",
            f"resourceids={vm_id}",
            "tags[0].key=role",
            "tags[0].value=web",
        )
        assert cs("listTags", "resourcetype=UserVm")["count"] == 1
        cs("deleteTags", "resourcetype=UserVm", f"resourceids={vm_id}", "tags[0].key=role")
        assert cs("listTags", "resourcetype=UserVm") == {}

        cs("destroyVirtualMachine", f"id={vm_id}", "expunge=true")
        cs("deleteSSHKeyPair", "name=demo")
        cs("deleteSecurityGroup", "name=web")
        assert cs("listVirtualMachines") == {}
        assert cs("listVolumes") == {}
