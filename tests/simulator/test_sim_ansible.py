"""Ansible's `ngine_io.cloudstack` collection (from PyPI's `ansible`, unmodified) against
`stackfleet simulator serve`.

Real: ansible-playbook and the collection's modules (cs_securitygroup, cs_securitygroup_rule,
cs_sshkeypair, cs_instance, cs_instance_info, cs_zone_info) with the `cs` library they use, in
their own processes; the simulator CLI as a separate OS process; HTTP over loopback; SQLite
state. The playbook creates, inspects, runs again reporting no change, changes the offering
of the instance (stop, changeServiceForVirtualMachine, start), and removes everything.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sf_serve import serve
from sim_apiclient import Api

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl demo"
PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")

CREATE = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    offering: Small
  tasks:
    - name: zone
      ngine_io.cloudstack.cs_zone_info:
        zone: sim-gva-1
      register: zone
    - name: security group
      ngine_io.cloudstack.cs_securitygroup:
        name: web
        description: web servers
      register: sg
    - name: ssh rule
      ngine_io.cloudstack.cs_securitygroup_rule:
        security_group: web
        protocol: tcp
        start_port: 22
        end_port: 22
        cidr: 0.0.0.0/0
      register: rule
    - name: key
      ngine_io.cloudstack.cs_sshkeypair:
        name: demo
        public_key: "{{ public_key }}"
      register: key
    - name: instance
      ngine_io.cloudstack.cs_instance:
        name: web-1
        display_name: web one
        zone: sim-gva-1
        template: Flatcar Container Linux stable
        service_offering: "{{ offering }}"
        security_groups: [web]
        ssh_key: demo
        root_disk_size: 20
        force: true
      register: vm
    - name: inspect
      ngine_io.cloudstack.cs_instance_info:
        name: web-1
      register: info
    - name: what the info modules saw
      ansible.builtin.assert:
        that:
          - zone.zones[0].network_type == "Basic"
          - info.instances | length == 1
          - info.instances[0].state == "Running"
          - info.instances[0].service_offering == offering
          - info.instances[0].display_name == "web one"
          - info.instances[0].volumes | length == 1
          - info.instances[0].volumes[0].type == "ROOT"
          - info.instances[0].volumes[0].size == 21474836480
          - info.instances[0].security_groups == ["web"]
          - info.instances[0].ssh_key == "demo"
    - name: report
      ansible.builtin.copy:
        dest: "{{ report }}"
        content: >-
          {{ {'changed': [sg.changed, rule.changed, key.changed, vm.changed],
              'vm': info.instances[0]} | to_json }}
"""

REMOVE = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ngine_io.cloudstack.cs_instance:
        name: web-1
        zone: sim-gva-1
        state: expunged
    - ngine_io.cloudstack.cs_sshkeypair:
        name: demo
        state: absent
    - ngine_io.cloudstack.cs_securitygroup_rule:
        security_group: web
        protocol: tcp
        start_port: 22
        end_port: 22
        cidr: 0.0.0.0/0
        state: absent
    - ngine_io.cloudstack.cs_securitygroup:
        name: web
        state: absent
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ansible_collection_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "create.yml").write_text(CREATE)
    (tmp_path / "remove.yml").write_text(REMOVE)
    with serve(tmp_path / "cloud.db") as served:
        env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "HOME": str(tmp_path),
            "LANG": "C.UTF-8",
            **served,
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_PIPELINING": "true",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
            "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"),
        }

        def play(name: str, **extra: str) -> str:
            extra_vars = {"public_key": PUBLIC_KEY, "report": str(tmp_path / "report.json")}
            proc = subprocess.run(
                [
                    str(PLAYBOOK),
                    "-i",
                    "localhost,",
                    name,
                    "-e",
                    json.dumps({**extra_vars, **extra}),
                ],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
            return proc.stdout

        def recap_changed(output: str) -> int:
            match = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", output)
            assert match, output[-2000:]
            return int(match.group(1))

        first = play("create.yml")
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["changed"] == [True, True, True, True]
        assert recap_changed(first) >= 4

        # The second pass changes nothing, and says so.
        second = play("create.yml")
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["changed"] == [False, False, False, False]
        assert recap_changed(second) == 1  # only the local report file's content differs

        # Day 2: a new offering (force: stop, changeServiceForVirtualMachine, start).
        play("create.yml", offering="Medium")
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["changed"] == [False, False, False, True]
        assert report["vm"]["service_offering"] == "Medium"

        play("remove.yml")
        api = Api(
            served["CLOUDSTACK_ENDPOINT"], served["CLOUDSTACK_KEY"], served["CLOUDSTACK_SECRET"]
        )
        assert api("listVirtualMachines") == {}
        assert api("listSSHKeyPairs") == {}
        groups = api("listSecurityGroups")["securitygroup"]
        assert [g["name"] for g in groups] == ["default"]
