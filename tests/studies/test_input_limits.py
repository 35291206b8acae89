"""Every input has bounds, checked at submit: knobs and their caps, budgets, seeds, sizes,
NUL bytes, NaN, database-range integers, YAML aliases; and /metrics during an outage."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hpsearch import studies
from hpsearch.errors import SpaceError, SpecError
from hpsearch.spaces import SearchSpace, list_spaces, load_space
from hpsearch.db.storage import open_storage
from hpsearch.train import DEFAULTS
from hpsearch.train.audio.config import AUDIO_DEFAULTS, parse_audio_config
from hpsearch.train.core.config import REGRESSION_DEFAULTS, parse_config
from hpsearch.train.core.family_knobs import FAMILY_KNOBS
from hpsearch.train.image.config import IMAGE_DEFAULTS
from hpsearch.service import Settings, create_app

SPEC = {"space": "demo", "task": {"epochs": 2}, "budget": {"trials": 4}}

#: A 480-byte billion laughs: nine levels of nine aliases, 9**9 strings once expanded.
BOMB = "".join(
    ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    + [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)]
)


def _param(**kw: object) -> dict[str, object]:
    return {"impact": "high", "checklist": "Width", **kw}


def _inline(params: dict[str, object], task: str = "tabular_classification") -> dict:
    return {"name": "inline", "task": task, "params": params}


@pytest.fixture
def api(storage_url: str, make_api_token: Callable[..., str]) -> Iterator[tuple[TestClient, str]]:
    """The real app over an empty study database (SQLite, then PostgreSQL) with a study ``s``
    (trial 0 complete, trial 1 running), and a client holding a write token."""
    storage = open_storage(storage_url)
    studies.create_study(storage, {**SPEC, "name": "s"})
    study, _ = studies.open_study(storage, "s")
    study.tell(study.ask(), 0.5)
    study.ask()
    headers = {"Authorization": f"Bearer {make_api_token(storage_url)}"}
    with TestClient(create_app(Settings(storage=storage_url)), headers=headers) as client:
        yield client, storage_url


# -- knobs and caps, at submit -------------------------------------------------------------


#: Specs whose space or fixed values a trainer cannot realize, and what the answer must name.
KNOB_CASES = [
        ({"space": _inline({"model.width": _param(type="int", low=16, high=10**9, default=64)})},
         ["model.width", "1000000000", "[1, 16384]"]),
        ({"space": _inline({"model.depth": _param(type="categorical", choices=[1, 10**6],
                                                   default=1)})},
         ["model.depth", "1000000", "[1, 64]"]),
        ({"space": _inline({"model.depth": _param(type="int", low=1, high=4, default=4)}),
          "fixed": {"model.depth": 10**6}},
         ["model.depth", "1000000", "[1, 4]"]),
        ({"space": _inline({"model.width": _param(type="int", low=8, high=4096, default=64)},
                           task="audio_classification")},
         ["model.width", "4096", "[1, 1024]", "audio"]),
        ({"space": _inline({"model.widht": _param(type="int", low=8, high=64, default=16)})},
         ["model.widht", "not a knob", "tabular_classification", "did you mean 'model.width'"]),
        ({"space": _inline({"model.width": _param(type="float", low=8, high=64, default=16)})},
         ["model.width", "type int or categorical", "float"]),
        ({"space": _inline({"model.activation": _param(type="categorical", choices=[1, 2],
                                                        default=1)})},
         ["model.activation", "must be a str", "1"]),
]  # fmt: skip


def test_submit_refuses_knobs_the_trainer_cannot_realize(api: tuple[TestClient, str]) -> None:
    client, _url = api
    for spec, words in KNOB_CASES:
        answer = client.post("/studies", json={**SPEC, "name": "bad", **spec})
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail
        for word in words:
            assert word in detail, detail
        assert client.get("/studies/bad").status_code == 404  # nothing was written


def test_every_bundled_space_passes_the_caps() -> None:
    for name in list_spaces():
        fixed = {"transfer.pretrained": False} if "transfer.pretrained" in load_space(
            name).params else {}  # fmt: skip
        studies.resolve_spec({"space": name, "fixed": fixed})


def test_family_knobs_are_the_trainers_own() -> None:
    assert set(FAMILY_KNOBS["tabular_classification"]) == set(DEFAULTS)
    assert set(FAMILY_KNOBS["tabular_regression"]) == set(REGRESSION_DEFAULTS)
    assert set(FAMILY_KNOBS["image_classification"]) == set(IMAGE_DEFAULTS)
    assert set(FAMILY_KNOBS["audio_classification"]) == set(AUDIO_DEFAULTS)


def test_the_trainer_refuses_a_number_past_its_cap() -> None:
    """A study stored before a cap existed fails its trial with one line, before any model."""
    with pytest.raises(ValueError, match=r"model\.width.*1000000000.*\[1, 16384\]"):
        parse_config({"model.width": 10**9})
    with pytest.raises(ValueError, match=r"model\.depth.*32.*\[1, 16\]"):
        parse_audio_config({"model.depth": 32})
    assert parse_config({"model.width": 16384}).model.width == 16384


# -- the spec's own numbers ----------------------------------------------------------------


#: Spec fields past their bounds (JSON text: bare NaN and Infinity included), and the field.
NUMBER_CASES = [
        ('"budget": {"seconds": Infinity}', "budget.seconds"),
        ('"budget": {"seconds": 1e400}', "budget.seconds"),
        ('"budget": {"seconds": NaN}', "budget.seconds"),
        ('"budget": {"seconds": 2592001}', "seconds"),
        ('"budget": {"trials": 1000001}', "trials"),
        ('"budget": {"trials": 5, "max_failures": 100001}', "max_failures"),
        ('"seed": 18446744073709551616', "seed"),
        ('"seed": 4294967296', "seed"),
        ('"seed": -1', "seed"),
        ('"pruner": {"name": "median", "args": {"n_startup_trials": NaN}}', "n_startup_trials"),
]  # fmt: skip


def test_budgets_and_seeds_are_bounded(api: tuple[TestClient, str]) -> None:
    client, _url = api
    for body, field in NUMBER_CASES:
        raw = '{"name": "bad", "space": "demo", ' + body + "}"
        answer = client.post("/studies", content=raw, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422, (body, answer.text)
        assert field in answer.text, (body, answer.text)
        assert client.get("/studies/bad").status_code == 404
    ok = client.post(
        "/studies",
        json={
            **SPEC,
            "name": "ok",
            "seed": 2**32 - 1,
            "budget": {"seconds": 30 * 86400, "trials": 10**6},
        },
    )
    assert ok.status_code == 201, ok.text  # fmt: skip


def test_the_largest_seed_trains_every_trial_in_range() -> None:
    spec = studies.resolve_spec({**SPEC, "seed": 2**32 - 1, "budget": {"trials": 10**6}})
    # Trial n trains with seed + n: torch takes seeds below 2**64, numpy gets it mod 2**32.
    assert spec.seed + 10**6 < 2**64
    with pytest.raises(SpecError, match="seed"):
        studies.resolve_spec({**SPEC, "seed": 2**32})


# -- the service: NaN, NUL bytes, database-range integers -----------------------------------


def test_bad_literals_nul_bytes_and_huge_integers_are_422_never_5xx(
    api: tuple[TestClient, str],
) -> None:
    client, url = api
    json_headers = {"Content-Type": "application/json"}
    answers = {
        "trial beyond int32": client.get("/studies/s/trials/2105925694730"),
        "trial beyond int64": client.get(f"/studies/s/trials/{2**70}"),
        "prune beyond int32": client.post("/studies/s/trials/5163716655/prune"),
        "offset beyond int32": client.get("/studies/s/trials", params={"offset": 2**40}),
        "study offset": client.get("/studies", params={"offset": 2**63}),
        "NUL in a name": client.get("/studies/s%00x"),
        "NUL in a prune path": client.post("/studies/s%00/trials/1/prune"),
        "NUL in a query": client.get("/studies", params={"prefix": "s\x00"}),
        "NUL in a worker filter": client.get("/workers", params={"study": "s\x00"}),
        "NUL in a spec": client.post(
            "/studies", json={**SPEC, "name": "n", "task": {"target": "a\x00b"}}
        ),
        "NUL in a key": client.post("/studies/s/enqueue", json={"configs": [{"optim\x00": 1}]}),
        "bare NaN": client.post(
            "/studies", content='{"name": "n", "seed": NaN}', headers=json_headers
        ),
        "bare Infinity": client.post(
            "/studies/s/enqueue",
            content='{"configs": [{"optim.lr": Infinity}]}',
            headers=json_headers,
        ),  # fmt: skip
        "-Infinity in pruner args": client.put(
            "/studies/s/pruner",
            content='{"name": "percentile", "args": {"percentile": -Infinity}}',
            headers=json_headers,
        ),
    }
    statuses = {what: r.status_code for what, r in answers.items()}
    assert all(s == 422 for s in statuses.values()), statuses
    for what, answer in answers.items():
        assert answer.headers["content-type"].startswith("application/json"), what
    # The real trial and the real prune still work: the bounds cut nothing legitimate.
    assert client.get("/studies/s/trials/0").status_code == 200
    assert client.post("/studies/s/trials/1/prune").status_code == 202
    assert studies.load_spec(open_storage(url), "s").pruner.name == "median"


#: A 401-digit integer: ``float()`` of it raises OverflowError.
HUGE = 10**400

#: Specs holding HUGE where a number goes, and the field the answer must name.
HUGE_CASES = [
        ({"fixed": {"model.width": HUGE}}, "model.width"),
        ({"fixed": {"optim.lr": HUGE}}, "optim.lr"),
        ({"fixed": {"optim.lr": -HUGE}}, "optim.lr"),
        ({"space": _inline({"model.width": _param(type="int", low=16, high=HUGE, default=64)})},
         "high"),
        ({"space": _inline({"model.width": _param(type="int", low=-HUGE, high=64, default=32)})},
         "low"),
        ({"space": _inline({"model.width": _param(type="int", low=16, high=64, default=HUGE)})},
         "default"),
        ({"space": _inline({"optim.lr": _param(type="float", low=0.1, high=HUGE, default=0.5)})},
         "high"),
        ({"space": _inline({"model.width": _param(type="int", low=16, high=64, step=HUGE,
                                                   default=16)})}, "step"),
        ({"space": _inline({"model.width": _param(type="categorical", choices=[16, HUGE],
                                                   default=16)})}, "choices"),
        ({"pruner": {"name": "median", "args": {"n_warmup_steps": HUGE}}}, "n_warmup_steps"),
        ({"pruner": {"name": "patient",
                     "args": {"wraps": {"name": "median", "n_startup_trials": 2**31}}}},
         "n_startup_trials"),
]  # fmt: skip


def test_huge_integers_in_a_spec_are_422_naming_the_field(api: tuple[TestClient, str]) -> None:
    client, _url = api
    for spec, field in HUGE_CASES:
        answer = client.post("/studies", json={**SPEC, "name": "bad", **spec})
        assert answer.status_code == 422, (field, answer.text)
        assert field in answer.text, (field, answer.text)
        if "space" in spec:  # an inline space's errors come as pydantic's list, input included
            assert "too large" in answer.text and "2**63" in answer.text, answer.text
        else:  # one line, the number abbreviated
            detail = answer.json()["detail"]
            assert isinstance(detail, str) and "\n" not in detail, detail
            assert str(HUGE) not in detail, detail
        assert client.get("/studies/bad").status_code == 404


def test_pruner_arguments_are_bounded(api: tuple[TestClient, str]) -> None:
    client, url = api
    for args in ({"n_warmup_steps": HUGE}, {"n_startup_trials": 2**31}, {"n_warmup_steps": -HUGE}):
        answer = client.put("/studies/s/pruner", json={"name": "median", "args": args})
        assert answer.status_code == 422, (args, answer.text)
        detail = answer.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and str(HUGE) not in detail
        assert next(iter(args)) in detail and "2147483647" in detail, detail
    assert studies.load_spec(open_storage(url), "s").pruner.args == {}  # nothing was stored
    ok = client.put("/studies/s/pruner", json={"name": "median", "args": {"n_warmup_steps": 3}})
    assert ok.status_code == 200, ok.text
    assert studies.load_spec(open_storage(url), "s").pruner.args == {"n_warmup_steps": 3}


# -- sizes of an inline space --------------------------------------------------------------


def test_inline_spaces_are_capped_in_size() -> None:
    many = {f"p{i}": _param(type="int", low=0, high=1, default=0) for i in range(257)}
    with pytest.raises(ValueError, match="257|at most 256"):
        SearchSpace.model_validate(_inline(many))
    with pytest.raises(ValueError, match="at most 256"):
        SearchSpace.model_validate(
            _inline({"p": _param(type="categorical", choices=list(range(300)), default=0)})
        )
    with pytest.raises(ValueError, match="characters long"):
        SearchSpace.model_validate(
            _inline({"p": _param(type="categorical", choices=["x" * 10_000], default="x" * 10_000)})
        )
    with pytest.raises(ValueError, match="characters long"):
        SearchSpace.model_validate(_inline({"p" * 1000: _param(type="int", low=0, high=1,
                                                                default=0)}))  # fmt: skip


# -- YAML alias bombs ----------------------------------------------------------------------


def _limit_memory() -> None:
    limit = 1 << 30  # 1 GiB: the bomb would take several
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_submit_refuses_a_yaml_alias_bomb_quickly_in_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    assert len(BOMB.encode()) < 600
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hpsearch", "submit", str(bomb), "--server", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_memory,
        stdin=subprocess.DEVNULL,
    )
    assert time.monotonic() - started < 30
    assert done.returncode not in (0, -9), done.stderr
    message = done.stderr.strip()
    assert "alias" in message and "bomb.yaml" in message, message
    assert len(message.splitlines()) == 1, message
    assert "Traceback" not in message and "MemoryError" not in message


def test_submit_refuses_deeply_nested_and_oversized_yaml_in_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 20000)
    big = tmp_path / "big.yaml"
    big.write_text("name: big\ndescription: " + "x" * (1 << 20) + "\n")
    for path, words in ((deep, "nested too deeply"), (big, "larger than 1 MiB")):
        done = subprocess.run(
            [sys.executable, "-m", "hpsearch", "submit", str(path),
             "--server", "http://127.0.0.1:9"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        message = done.stderr.strip()
        assert done.returncode != 0, message
        assert words in message and path.name in message, message
        assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    with pytest.raises(SpaceError, match="nested too deeply"):
        load_space(str(deep))


def test_space_files_and_enqueue_files_refuse_aliases(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(BOMB)
    started = time.monotonic()
    with pytest.raises(SpaceError, match="alias"):
        load_space(str(space))
    assert time.monotonic() - started < 5
    configs = tmp_path / "configs.yaml"
    configs.write_text("a: &x {optim.lr: 0.01}\nb: *x\n")
    done = subprocess.run(
        [sys.executable, "-m", "hpsearch", "enqueue", "s", str(configs),
         "--server", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode != 0 and "alias" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# -- /metrics during an outage -------------------------------------------------------------


def test_metrics_answer_database_down_during_an_outage(
    restartable_postgres: tuple[str, object], make_api_token: Callable[..., str]
) -> None:
    url, cluster = restartable_postgres
    storage = open_storage(url)
    studies.create_study(storage, {**SPEC, "name": "m"})
    headers = {"Authorization": f"Bearer {make_api_token(url, 'read')}"}
    with TestClient(create_app(Settings(storage=url)), headers=headers) as client:
        up = client.get("/metrics")
        assert up.status_code == 200 and "hpsearch_database_up 1.0" in up.text
        cluster.stop()  # type: ignore[attr-defined]
        down = client.get("/metrics")
        assert down.status_code == 200, down.text
        assert "hpsearch_database_up 0.0" in down.text
        assert "hpsearch_trials" not in down.text  # nothing else while the token is unchecked
        assert client.get("/studies/m").status_code == 503  # other routes still say it
