"""In-service upgrades in the Cattle sandbox: upgrade, finishupgrade, rollback, the actions map per
state, Cattle's 422 refusals, injected upgrade failures, and the client's three upgrade methods."""

from __future__ import annotations

from typing import Any

import pytest

from controller.cattle.client import CattleClient
from controller.cattle.errors import CattleBusy
from controller.sandbox.app import SANDBOX_STATE
from controller.sandbox.seed import SandboxSeed, SeedError, SeedProject, SeedService, SeedSidekick, parse_seed
from tests.sandbox_harness import Client, MakeClient, json_of
from tests.toolbox import FakeClock

TRANSITION = 0.1  # SandboxOptions' default transition_ms, in seconds
SERVICE = "/v2-beta/projects/1a5/services/1s7"


@pytest.fixture
def seed() -> SandboxSeed:
    web_service = SeedService(
        id="1s7", name="web", stack_id="1st1", scale=3, image="docker:nginx:1.13", labels={"tier": "front"},
        sidekicks=(SeedSidekick(name="logs", image="docker:fluentd:1.2", labels={"role": "logs"}),),
    )  # fmt: skip
    failing = SeedService(id="1s9", name="api", stack_id="1st1", image="docker:acme/api:1")
    return SandboxSeed(projects=(SeedProject(id="1a5", services=(web_service, failing)),))


def strategy(image: str = "docker:nginx:1.14", **extra: Any) -> dict[str, Any]:
    launch = {"imageUuid": image, "labels": {"tier": "front"}}
    return {"batchSize": 1, "intervalMillis": 2000, "startFirst": False, "launchConfig": launch, **extra}


async def act(client: Client, action: str, body: Any = None, path: str = SERVICE) -> tuple[int, Any]:
    return await json_of(client, "POST", f"{path}/?action={action}", json=body)


async def upgraded(client: Client, clock: FakeClock, image: str = "docker:nginx:1.14") -> Any:
    await act(client, "upgrade", {"inServiceStrategy": strategy(image, batchSize=3)})
    clock.now += TRANSITION
    return (await json_of(client, "GET", SERVICE))[1]


def cattle(client: Client) -> CattleClient:
    return CattleClient(
        client.session, base_url=str(client.make_url("/v2-beta")), access_key=None, secret_key=None
    )


# -- upgrade


async def test_upgrade_answers_202_upgrading_with_the_new_launch_config_and_version(
    make_client: MakeClient,
) -> None:
    client = await make_client()

    status, body = await act(client, "upgrade", {"inServiceStrategy": strategy()})

    assert (status, body["state"], body["transitioning"]) == (202, "upgrading", "yes")
    assert body["launchConfig"]["imageUuid"] == "docker:nginx:1.14"
    assert body["launchConfig"]["version"] not in ("", "0")
    assert set(body["actions"]) == {"update", "cancelupgrade", "rollback", "remove"}


async def test_upgrade_settles_upgraded_after_one_transition_per_batch(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()
    await act(client, "upgrade", {"inServiceStrategy": strategy(batchSize=2)})  # scale 3: two batches

    clock.now += TRANSITION * 1.5
    _, halfway = await json_of(client, "GET", SERVICE)
    clock.now += TRANSITION
    _, done = await json_of(client, "GET", SERVICE)

    assert halfway["state"] == "upgrading"
    assert (done["state"], done["transitioning"], done["transitioningMessage"]) == ("upgraded", "no", None)
    assert done["launchConfig"]["imageUuid"] == "docker:nginx:1.14"


async def test_upgrade_field_shows_the_strategy_and_the_previous_launch_config(
    make_client: MakeClient,
) -> None:
    client = await make_client()

    _, body = await act(client, "upgrade", {"inServiceStrategy": strategy()})

    running = body["upgrade"]["inServiceStrategy"]
    assert (running["batchSize"], running["intervalMillis"]) == (1, 2000)
    assert running["previousLaunchConfig"]["imageUuid"] == "docker:nginx:1.13"
    assert running["previousLaunchConfig"]["version"] == "0"


async def test_upgrade_of_a_sidekick_replaces_it_by_name_and_keeps_the_primary(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    sidekick = {"name": "logs", "imageUuid": "docker:fluentd:1.3", "labels": {"role": "logs"}}

    _, body = await act(client, "upgrade", {"inServiceStrategy": {"secondaryLaunchConfigs": [sidekick]}})

    (logs,) = body["secondaryLaunchConfigs"]
    assert (logs["name"], logs["imageUuid"]) == ("logs", "docker:fluentd:1.3")
    assert logs["version"] != "0"
    assert (body["launchConfig"]["imageUuid"], body["launchConfig"]["version"]) == ("docker:nginx:1.13", "0")


async def test_upgrade_to_the_launch_config_the_service_has_is_accepted_with_a_new_version(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()
    _, before = await json_of(client, "GET", SERVICE)
    same = {**strategy(), "launchConfig": before["launchConfig"]}  # a re-push: nothing in it changes

    status, body = await act(client, "upgrade", {"inServiceStrategy": same})
    clock.now += TRANSITION * 3
    _, after = await json_of(client, "GET", SERVICE)

    assert (status, body["state"]) == (202, "upgrading")
    assert after["state"] == "upgraded"
    assert after["launchConfig"]["imageUuid"] == before["launchConfig"]["imageUuid"]
    assert after["launchConfig"]["version"] != before["launchConfig"]["version"]


async def test_services_list_their_labels_and_sidekicks(make_client: MakeClient) -> None:
    client = await make_client()

    _, body = await json_of(client, "GET", SERVICE)

    assert body["launchConfig"]["labels"] == {"tier": "front"}
    assert [(c["name"], c["imageUuid"]) for c in body["secondaryLaunchConfigs"]] == [
        ("logs", "docker:fluentd:1.2")
    ]


# -- finishupgrade and rollback


async def test_finishupgrade_goes_finishing_upgrade_then_active(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()
    await upgraded(client, clock)

    status, finishing = await act(client, "finishupgrade")
    clock.now += TRANSITION
    _, done = await json_of(client, "GET", SERVICE)

    assert (status, finishing["state"]) == (202, "finishing-upgrade")
    assert (done["state"], done["transitioning"], done["upgrade"]) == ("active", "no", None)
    assert done["launchConfig"]["imageUuid"] == "docker:nginx:1.14"


async def test_rollback_restores_the_previous_launch_config_and_goes_active(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()
    await upgraded(client, clock)

    status, rolling = await act(client, "rollback")
    clock.now += TRANSITION
    _, done = await json_of(client, "GET", SERVICE)

    assert (status, rolling["state"]) == (202, "rolling-back")
    assert done["state"] == "active"
    assert (done["launchConfig"]["imageUuid"], done["launchConfig"]["version"]) == ("docker:nginx:1.13", "0")


async def test_rollback_while_still_upgrading_is_accepted(make_client: MakeClient) -> None:
    client = await make_client()
    await act(client, "upgrade", {"inServiceStrategy": strategy()})

    status, body = await act(client, "rollback")

    assert (status, body["state"], body["launchConfig"]["imageUuid"]) == (
        202,
        "rolling-back",
        "docker:nginx:1.13",
    )


# -- the actions map and refusals


@pytest.mark.parametrize(
    ("state", "actions"),
    [
        ("active", {"update", "deactivate", "upgrade", "restart", "remove"}),
        ("inactive", {"activate", "update", "upgrade", "remove"}),
        ("activating", {"update", "deactivate", "upgrade", "remove"}),
        ("updating-active", {"update", "deactivate", "upgrade", "remove"}),
        ("upgrading", {"update", "cancelupgrade", "rollback", "remove"}),
        ("upgraded", {"finishupgrade", "rollback", "remove"}),
        ("canceled-upgrade", {"continueupgrade", "rollback", "remove"}),
        ("finishing-upgrade", {"update", "cancelupgrade", "remove"}),
        ("restarting", {"activate", "deactivate", "remove"}),
        ("removed", set()),
    ],
)
async def test_actions_map_offers_what_cattle_offers_in_each_state(
    make_client: MakeClient, state: str, actions: set[str]
) -> None:
    client = await make_client()
    client.app[SANDBOX_STATE].set_state("1a5", "1s7", state)

    _, body = await json_of(client, "GET", SERVICE)

    assert set(body["actions"]) == actions
    assert all(url == f"{body['links']['self']}/?action={a}" for a, url in body["actions"].items())


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "MissingRequired"),
        (None, "MissingRequired"),
        ({"inServiceStrategy": {"batchSize": 1}}, "InvalidOption"),
        ({"inServiceStrategy": strategy(batchSize=0)}, "MinLimitExceeded"),
        ({"inServiceStrategy": strategy(intervalMillis=99)}, "MinLimitExceeded"),
        ({"inServiceStrategy": {"launchConfig": {"labels": {}}}}, "MissingRequired"),
        (
            {"inServiceStrategy": {"secondaryLaunchConfigs": [{"name": "nope", "imageUuid": "x"}]}},
            "InvalidReference",
        ),
    ],
)
async def test_a_wrong_upgrade_is_422_and_changes_nothing(
    make_client: MakeClient, body: Any, code: str
) -> None:
    client = await make_client()

    status, error = await act(client, "upgrade", body)
    _, service = await json_of(client, "GET", SERVICE)

    assert (status, error["type"], error["code"]) == (422, "error", code)
    assert (service["state"], service["launchConfig"]["imageUuid"]) == ("active", "docker:nginx:1.13")


@pytest.mark.parametrize(
    ("state", "action"),
    [("upgraded", "upgrade"), ("upgrading", "upgrade"), ("active", "finishupgrade"), ("active", "rollback")],
)
async def test_an_action_the_state_does_not_offer_is_422_action_not_available(
    make_client: MakeClient, state: str, action: str
) -> None:
    client = await make_client()
    client.app[SANDBOX_STATE].set_state("1a5", "1s7", state)

    status, error = await act(client, action, {"inServiceStrategy": strategy()})

    assert (status, error["code"]) == (422, "ActionNotAvailable")


async def test_an_unknown_action_is_422_invalid_action(make_client: MakeClient) -> None:
    client = await make_client()

    status, error = await act(client, "explode")

    assert (status, error["code"]) == (422, "InvalidAction")


async def test_a_post_without_an_action_is_405(make_client: MakeClient) -> None:
    client = await make_client()

    status, error = await json_of(client, "POST", SERVICE, json={})

    assert (status, error["code"]) == (405, "MethodNotAllowed")


async def test_an_action_on_an_unknown_service_is_404(make_client: MakeClient) -> None:
    client = await make_client()

    status, _ = await act(client, "upgrade", {"inServiceStrategy": strategy()}, path=SERVICE + "0")

    assert status == 404


# -- injected failure


async def test_fail_upgrade_of_leaves_the_service_upgrading_in_error(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client(fail_upgrade_of={"1s9"})
    path = "/v2-beta/projects/1a5/services/1s9"
    await act(client, "upgrade", {"inServiceStrategy": strategy("docker:acme/api:2")}, path=path)

    clock.now += TRANSITION * 10
    _, body = await json_of(client, "GET", path)

    assert (body["state"], body["transitioning"]) == ("upgrading", "error")
    assert body["transitioningMessage"] == "image pull failed"
    assert "rollback" in body["actions"]


async def test_rollback_of_a_failed_upgrade_restores_the_old_image(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client(fail_upgrade_of={"1s9"})
    path = "/v2-beta/projects/1a5/services/1s9"
    await act(client, "upgrade", {"inServiceStrategy": strategy("docker:acme/api:2")}, path=path)
    clock.now += TRANSITION

    await act(client, "rollback", path=path)
    clock.now += TRANSITION
    _, body = await json_of(client, "GET", path)

    assert (body["state"], body["transitioning"], body["transitioningMessage"]) == ("active", "no", None)
    assert body["launchConfig"]["imageUuid"] == "docker:acme/api:1"


async def test_fail_upgrade_of_spares_other_services(make_client: MakeClient, clock: FakeClock) -> None:
    client = await make_client(fail_upgrade_of={"1s9"})

    body = await upgraded(client, clock)

    assert (body["state"], body["transitioning"]) == ("upgraded", "no")


# -- seeds


def test_seed_sidekicks_are_parsed_with_defaults() -> None:
    seed = parse_seed(
        {
            "projects": [
                {"id": "1a5", "services": [{"id": "1s7", "name": "web", "sidekicks": [{"name": "logs"}]}]}
            ]
        }
    )

    assert seed.projects[0].services[0].sidekicks == (SeedSidekick(name="logs", image="docker:nginx"),)


def test_seed_reports_a_wrong_sidekick_with_its_path() -> None:
    data = {
        "projects": [{"id": "1a5", "services": [{"id": "1s7", "name": "web", "sidekicks": [{"image": "x"}]}]}]
    }

    with pytest.raises(SeedError, match=r"projects\[0\]\.services\[0\]\.sidekicks\[0\]\.name"):
        parse_seed(data)


# -- the client against the sandbox


async def test_client_upgrade_service_answers_the_upgrading_service(make_client: MakeClient) -> None:
    client = await make_client()

    got = await cattle(client).upgrade_service("1a5", "1s7", strategy())

    assert (got["state"], got["launchConfig"]["imageUuid"]) == ("upgrading", "docker:nginx:1.14")


async def test_client_finish_upgrade_finishes_an_upgraded_service(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()
    await upgraded(client, clock)

    got = await cattle(client).finish_upgrade("1a5", "1s7")

    assert got["state"] == "finishing-upgrade"


async def test_client_rollback_service_rolls_back(make_client: MakeClient, clock: FakeClock) -> None:
    client = await make_client()
    await upgraded(client, clock)

    got = await cattle(client).rollback_service("1a5", "1s7")

    assert (got["state"], got["launchConfig"]["imageUuid"]) == ("rolling-back", "docker:nginx:1.13")


async def test_client_action_not_available_is_busy_with_cattles_code(make_client: MakeClient) -> None:
    client = await make_client()

    with pytest.raises(CattleBusy) as caught:
        await cattle(client).finish_upgrade("1a5", "1s7")

    assert (caught.value.status, caught.value.code) == (422, "ActionNotAvailable")
