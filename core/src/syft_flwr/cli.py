"""The ``syft-flwr`` command: list transports, run a project, run the demo, manage keys.

This is an application entry point, so unlike the library it prints and configures logging.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syft_flwr import __version__
from syft_flwr.addresses import check_datasite
from syft_flwr.client.workspace import DatasiteWorkspace
from syft_flwr.config import ProjectConfig, RuntimeSettings, load_project_config
from syft_flwr.crypto.keys import IdentityKeys
from syft_flwr.crypto.keystore import KeyStore
from syft_flwr.errors import (
    ConfigError,
    InvalidAddressError,
    JobStartError,
    RunInterruptedError,
    SyftFlwrError,
)
from syft_flwr.node_ids import normalise_email
from syft_flwr.server.workspace import FAILED, FINISHED, RunInfo, Workspace
from syft_flwr.workspace_location import workspace_root

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["EXIT_ERROR", "EXIT_FAILED", "EXIT_INTERRUPTED", "main"]

EXIT_FAILED = 1
"""The run failed (its ServerApp raised, or its job did not start)."""
EXIT_ERROR = 2
"""The command could not do its work: a configuration error (named key and file), a missing
key, an unusable workspace... (a :class:`~syft_flwr.errors.SyftFlwrError`, never a traceback)."""
EXIT_INTERRUPTED = 3
"""The run stopped on a fault (medium, disk) and is resumable: run the same command again."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``syft-flwr`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "plugin_main", None) is not None:
        _configure_logging(args.verbose)
        return int(args.plugin_main(args.plugin_args))
    _configure_logging(args.verbose)
    try:
        return int(args.handler(args))
    except RunInterruptedError as exc:
        print(f"syft-flwr: interrupted: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except JobStartError as exc:
        print(f"syft-flwr: the run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SyftFlwrError as exc:
        print(f"syft-flwr: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syft-flwr", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    _add_plugin_commands(commands)

    transports = commands.add_parser("transports", help="list installed transports")
    transports.set_defaults(handler=_cmd_transports)

    run = commands.add_parser("run", help="run the server or client side of a Flower project")
    run.add_argument("project_dir", type=Path, help="directory holding the pyproject.toml")
    run.add_argument("--email", help="act as this datasite (default: SYFTBOX_EMAIL)")
    run.add_argument(
        "--fresh",
        action="store_true",
        help="server: start a new run instead of resuming an interrupted one",
    )
    run.add_argument(
        "--run-config",
        action="append",
        default=[],
        metavar='"K=V ..."',
        help="override [tool.flwr.app.config] values, as `flwr run --run-config` does",
    )
    run.add_argument(
        "--node-config",
        action="append",
        default=[],
        metavar='"K=V ..."',
        help="datasite: its Flower node config (default partition-id = its position in "
        "datasites, num-partitions = their number), as `flower-supernode --node-config`",
    )
    run.set_defaults(handler=_cmd_run)

    status = commands.add_parser(
        "status",
        help="the server's run, rounds and datasites; on a datasite, runs waiting for approval",
    )
    status.add_argument("project_dir", type=Path, help="directory holding the pyproject.toml")
    status.add_argument("--run", type=int, dest="run_id", help="this run (default: the latest)")
    status.add_argument("--email", help="act as this datasite (default: SYFTBOX_EMAIL)")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(handler=_cmd_status)

    audit = commands.add_parser("audit", help="a datasite's record of every request it decided on")
    audit.add_argument("project_dir", type=Path, help="directory holding the pyproject.toml")
    audit.add_argument("--email", help="this datasite (default: SYFTBOX_EMAIL)")
    audit.add_argument("--outcome", help="only accepted / refused / dropped / held requests")
    audit.add_argument("--sender", help="only requests from this sender")
    audit.add_argument("--last", type=int, metavar="N", help="only the last N records")
    audit.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    audit.set_defaults(handler=_cmd_audit)

    for name, verb in (("approve", "serve"), ("deny", "refuse")):
        decide = commands.add_parser(name, help=f"{verb} a run waiting for this datasite's owner")
        decide.add_argument("run_id", type=int, help="the run, as `syft-flwr status` lists it")
        decide.add_argument(
            "--project-dir", type=Path, default=Path("."), help="the project (default: .)"
        )
        decide.add_argument("--email", help="this datasite (default: SYFTBOX_EMAIL)")
        decide.set_defaults(handler=_cmd_decide, approve=name == "approve")

    plugin = commands.add_parser("plugin", help="tools for transport plugin authors")
    plugin_commands = plugin.add_subparsers(required=True, metavar="ACTION")
    new = plugin_commands.add_parser("new", help="scaffold a new transport plugin package")
    new.add_argument("name", help="the transport name, e.g. 'pigeon'")
    new.add_argument("--dir", type=Path, help="where to create it (default ./syft-flwr-NAME)")
    new.set_defaults(handler=_cmd_plugin_new)

    demo = commands.add_parser("demo", help="federated training on an embedded dataset")
    demo.add_argument("--transport", default="memory", help="installed transport to use")
    demo.add_argument("--datasites", type=int, default=3, help="number of clients (default 3)")
    demo.add_argument("--rounds", type=int, default=5, help="FedAvg rounds (default 5)")
    demo.add_argument(
        "--clients",
        choices=("auto", "threads", "processes"),
        default="auto",
        help="run clients as threads or processes (auto: processes unless the transport "
        "is limited to one process)",
    )
    demo.set_defaults(handler=_cmd_demo)
    _add_keys_parser(commands)
    return parser


def _add_keys_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="manage this identity's encryption keys")
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--email", help="the identity (default: SYFTBOX_EMAIL)")
    common.add_argument(
        "--key-dir", type=Path, help="key root (default: SYFT_FLWR_KEY_DIR or ~/.config/...)"
    )
    common.add_argument(
        "--project-dir",
        type=Path,
        help="publish the key document through this project's transport afterwards",
    )
    init = actions.add_parser("init", parents=[common], help="create keys (once)")
    init.add_argument("--force", action="store_true", help="replace existing syft-flwr keys")
    init.add_argument(
        "--import-syft-crypto",
        nargs="?",
        const="",
        type=str,
        metavar="KEY_FILE",
        help="adopt this identity's syft-crypto keys (syft-flwr 0.5.x) instead of making new "
        "ones, so its did.json stays valid for syft-crypto peers; KEY_FILE defaults to the "
        "pvt.jwks.json syft-crypto uses for the SyftBox client config",
    )
    init.set_defaults(handler=_cmd_keys_init)
    show = actions.add_parser("show", parents=[common], help="print the public keys")
    show.set_defaults(handler=_cmd_keys_show)
    rotate = actions.add_parser("rotate", parents=[common], help="new agreement key")
    rotate.add_argument(
        "--grace", type=float, default=None, help="seconds the old key stays accepted (7 days)"
    )
    rotate.set_defaults(handler=_cmd_keys_rotate)


def _add_plugin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Subcommands contributed by plugins (``syft_flwr_cli_commands``), e.g. ``gdrive``."""
    from syft_flwr.plugins import get_plugin_manager

    try:
        contributed = get_plugin_manager().hook.syft_flwr_cli_commands()
    except SyftFlwrError as exc:  # a broken plugin must not take the whole CLI down
        print(f"syft-flwr: warning: plugin commands unavailable: {exc}", file=sys.stderr)
        return
    for entries in contributed:
        for name, help_text, plugin_main in entries:
            command = commands.add_parser(name, help=help_text, add_help=False)
            command.add_argument("plugin_args", nargs=argparse.REMAINDER)
            command.set_defaults(plugin_main=plugin_main)


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_printed_by_flower)
    logging.getLogger("flwr").setLevel(level)


def _printed_by_flower(record: logging.LogRecord) -> bool:
    """Whether the root's handlers print ``record``: not a Flower record while Flower's logger
    has a console handler of its own (Flower adds one when imported), which prints it already;
    without this filter every Flower line appeared twice with ``-v``."""
    if record.name != "flwr" and not record.name.startswith("flwr."):
        return True
    return not logging.getLogger("flwr").handlers


def _cmd_transports(args: argparse.Namespace) -> int:
    from syft_flwr.plugins import get_transport_registry

    infos = list(get_transport_registry())
    if not infos:
        print("no transports installed; install one, e.g. pip install syft-flwr-memory")
        return 1
    rows = [("NAME", "DISTRIBUTION", "VERSION", "DESCRIPTION")]
    rows += [(i.name, i.distribution or "?", i.version or "?", i.description) for i in infos]
    widths = [max(len(row[col]) for row in rows) for col in range(3)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)),
            row[3],
        )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from syft_flwr.run import syftbox_run_flwr_client, syftbox_run_flwr_server
    from syft_flwr.transport_setup import resolve_identity

    project_dir: Path = args.project_dir.resolve()
    config = load_project_config(project_dir)
    app_name = config.require_app_name()
    runtime = RuntimeSettings.from_env()
    is_server = bool(config.aggregator) and normalise_email(
        resolve_identity(config, runtime, args.email, server=True)
    ) == normalise_email(config.aggregator or "")
    if is_server:
        done = None if args.fresh else _done_run(config, project_dir, app_name)
        if done is not None:
            return _report_done(done)
        with _watching():
            syftbox_run_flwr_server(
                project_dir, run_config_overrides=args.run_config, fresh=args.fresh
            )
        outcome = _done_run(config, project_dir, app_name)
        if outcome is not None and outcome.status == FAILED:
            print(f"syft-flwr: run {outcome.run_id} failed: {outcome.error}", file=sys.stderr)
            return EXIT_FAILED
        return 0
    identity = resolve_identity(config, runtime, args.email, server=False)
    reason = syftbox_run_flwr_client(
        project_dir,
        email=identity,
        run_config_overrides=args.run_config,
        node_config_overrides=args.node_config,
    )
    print(f"{identity}: stopped ({reason})")
    return 0


@contextlib.contextmanager
def _watching() -> Iterator[None]:
    """Show the server's progress on standard error while the run goes on: a live line on a
    terminal, ``INFO`` log lines of :mod:`syft_flwr.server.progress` otherwise (shown even
    without ``-v``: they are what a person watching a log file reads)."""
    from syft_flwr.plugins import get_plugin_manager
    from syft_flwr.server import progress

    display = progress.display_for(sys.stderr)
    with contextlib.ExitStack() as stack:
        if isinstance(display, progress.TerminalDisplay):
            stack.enter_context(_logs_above(display.console))
        elif not display.log.isEnabledFor(logging.INFO):
            display.log.setLevel(logging.INFO)
        stack.enter_context(progress.watching(get_plugin_manager(), display))
        yield


@contextlib.contextmanager
def _logs_above(console: Console) -> Iterator[None]:
    """Route the log handlers that write to the terminal through ``console`` meanwhile, so a
    log line is printed above the live line instead of through it (the handlers hold the
    stream they were given, which rich's own redirection of ``sys.stderr`` does not reach)."""
    from rich.file_proxy import FileProxy

    terminal = {id(sys.stderr), id(sys.__stderr__), id(console.file)}
    swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
    for log in (logging.getLogger(), logging.getLogger("flwr")):
        for handler in log.handlers:
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in terminal:
                swapped.append((handler, handler.setStream(FileProxy(console, handler.stream))))
    try:
        yield
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)


def _done_run(config: ProjectConfig, project_dir: Path, app_name: str) -> RunInfo | None:
    """The app's last run when it is over (finished, failed), else ``None``."""
    root = workspace_root(config, project_dir)
    latest = Workspace(root).latest_of(app_name) if root is not None else None
    if latest is None:
        return None
    info = latest.info()
    return info if info.status in (FINISHED, FAILED) else None


def _report_done(info: RunInfo) -> int:
    """Say that the run a restart would repeat is over; starting another needs ``--fresh``."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.finished_at or info.updated_at))
    rounds = f"{info.round} of {info.num_rounds} rounds" if info.round is not None else "no round"
    print(f"run {info.run_id} of {info.app_name} {info.status} at {when} ({rounds})")
    if info.error:
        print(f"  error: {info.error}")
    print("  nothing to do; start a new run with: syft-flwr run --fresh PROJECT_DIR")
    return 0 if info.status == FINISHED else EXIT_FAILED


def _cmd_status(args: argparse.Namespace) -> int:
    from syft_flwr.client.report import datasite_status, datasite_status_text
    from syft_flwr.server.status import run_status, status_text

    project_dir: Path = args.project_dir.resolve()
    config = load_project_config(project_dir)
    datasite = _datasite_identity(config, args.email)
    if datasite is not None:
        workspace = _datasite_workspace(config, project_dir, datasite)
        report = datasite_status(datasite, workspace)
        print(json.dumps(report, indent=2) if args.json else datasite_status_text(report))
        return 0
    report = run_status(config, project_dir, args.run_id)
    print(json.dumps(report, indent=2) if args.json else status_text(report))
    return 0


def _datasite_identity(config: ProjectConfig, explicit: str | None) -> str | None:
    """This process's identity when it is a datasite (not the aggregator), else ``None``."""
    from syft_flwr.transport_setup import resolve_identity

    try:
        identity = resolve_identity(config, RuntimeSettings.from_env(), explicit, server=False)
    except ConfigError:
        return None
    if config.aggregator and normalise_email(identity) == normalise_email(config.aggregator):
        return None
    return identity


def _datasite_workspace(config: ProjectConfig, project_dir: Path, email: str) -> DatasiteWorkspace:
    return DatasiteWorkspace.locate(config, project_dir, email)


def _required_datasite(config: ProjectConfig, explicit: str | None) -> str:
    datasite = _datasite_identity(config, explicit)
    if datasite is None:
        raise ConfigError(
            "which datasite? pass --email or set SYFTBOX_EMAIL to the datasite's email "
            f"(the aggregator {config.aggregator or ''} has no audit trail or approvals)"
        )
    return datasite


def _cmd_audit(args: argparse.Namespace) -> int:
    from syft_flwr.audit import OUTCOMES, read_audit
    from syft_flwr.client.report import audit_text

    if args.outcome is not None and args.outcome not in OUTCOMES:
        raise ConfigError(f"--outcome must be one of {', '.join(OUTCOMES)}, not {args.outcome!r}")
    if args.last is not None and args.last < 1:
        raise ConfigError("--last must be at least 1")
    project_dir: Path = args.project_dir.resolve()
    config = load_project_config(project_dir)
    workspace = _datasite_workspace(config, project_dir, _required_datasite(config, args.email))
    records = [
        record
        for record in read_audit(workspace.audit_path)
        if (args.outcome is None or record.get("outcome") == args.outcome)
        and (args.sender is None or record.get("sender") == args.sender)
    ]
    if args.last is not None:
        records = records[-args.last :]
    if args.json:
        for record in records:
            print(json.dumps(record, sort_keys=True))
    else:
        print(audit_text(records))
    return 0


def _cmd_decide(args: argparse.Namespace) -> int:
    from syft_flwr.approvals import ApprovalBook

    project_dir: Path = args.project_dir.resolve()
    config = load_project_config(project_dir)
    datasite = _required_datasite(config, args.email)
    book = ApprovalBook(_datasite_workspace(config, project_dir, datasite).approvals_dir)
    if not book.known(args.run_id):
        waiting = ", ".join(str(run.run_id) for run in book.pending()) or "none"
        raise ConfigError(
            f"run {args.run_id} never asked {datasite} for anything (waiting runs: {waiting}); "
            "see `syft-flwr status PROJECT_DIR`"
        )
    decision = book.decide(args.run_id, args.approve)
    print(f"{datasite}: run {args.run_id} {decision.decision}")
    return 0


def _cmd_plugin_new(args: argparse.Namespace) -> int:
    from syft_flwr.scaffold import PluginNames, create_plugin_package

    names = PluginNames.from_transport(args.name)
    destination: Path = args.dir or Path(names.distribution)
    for path in create_plugin_package(args.name, destination):
        print(f"created {path}")
    print(
        f"\nnext: pip install -e '{destination}[test]' && pytest {destination}\n"
        f"then implement {names.class_name} in {destination}/src/{names.package}/transport.py"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from syft_flwr.demo.apps import RoundReport
    from syft_flwr.demo.runner import run_local

    if args.datasites < 1 or args.rounds < 1:
        raise ConfigError("--datasites and --rounds must be at least 1")
    print(
        f"syft-flwr demo: FedAvg logistic regression, {args.datasites} datasites, "
        f"{args.rounds} rounds, transport '{args.transport}'"
    )
    started = time.perf_counter()

    def show(report: RoundReport) -> None:
        if report.server_round == 0:
            print(
                f"round  0  initial model      test loss {report.test_loss:.4f}  "
                f"accuracy {report.test_accuracy:.3f}"
            )
            return
        train = f"{report.train_loss:.4f}" if report.train_loss is not None else "  n/a "
        print(
            f"round {report.server_round:2d}  train loss {train}  test loss "
            f"{report.test_loss:.4f}  accuracy {report.test_accuracy:.3f}  "
            f"clients {report.clients}/{args.datasites}  {report.seconds:.2f}s",
            flush=True,
        )

    processes = {"auto": None, "threads": False, "processes": True}[args.clients]
    result = run_local(args.transport, args.datasites, args.rounds, show, processes=processes)
    initial, final = result.initial, result.final
    print(
        f"final model: test loss {final.test_loss:.4f} (initial {initial.test_loss:.4f}), "
        f"accuracy {final.test_accuracy:.3f} (initial {initial.test_accuracy:.3f}); "
        f"{len(result.stop_reasons)}/{args.datasites} client "
        f"{'processes' if result.client_processes else 'threads'} stopped cleanly; "
        f"{time.perf_counter() - started:.1f}s"
    )
    if result.client_errors:
        for email, error in result.client_errors.items():
            print(f"client {email} failed: {error}", file=sys.stderr)
        return 1
    return 0 if final.test_loss < initial.test_loss else 1


def _keys_target(args: argparse.Namespace) -> tuple[KeyStore, str]:
    """The key store and identity ``keys`` acts on, both checked before anything is written.

    :raises ConfigError: no identity, an unsafe ``--email``, or a key root that is no folder.
    """
    email = args.email or RuntimeSettings.from_env().email
    if args.project_dir is not None and not email:
        from syft_flwr.transport_setup import resolve_identity

        config = load_project_config(args.project_dir.resolve())
        email = resolve_identity(config, RuntimeSettings.from_env(), None, server=True)
    if not email:
        raise ConfigError("no identity: pass --email or set SYFTBOX_EMAIL")
    try:
        check_datasite(email)
    except InvalidAddressError as exc:
        flag = "--email" if args.email else "SYFTBOX_EMAIL"
        raise ConfigError(f"{flag}: {exc}") from None
    store = KeyStore(args.key_dir, source="--key-dir") if args.key_dir else KeyStore()
    return store, email


def _publish_if_asked(args: argparse.Namespace, keys: IdentityKeys) -> None:
    if args.project_dir is None:
        return
    from syft_flwr.crypto.policy import publish_keys
    from syft_flwr.transport_setup import create_transport

    project_dir = args.project_dir.resolve()
    config = load_project_config(project_dir)
    transport = create_transport(config, RuntimeSettings.from_env(), keys.email, project_dir)
    try:
        publish_keys(transport, keys)
    finally:
        transport.close()
    print(f"published the key document through the {config.transport} transport")


def _print_keys(store: KeyStore, keys: IdentityKeys) -> None:
    from syft_flwr.crypto.document import build_document

    document = build_document(keys)
    print(f"identity:     {keys.email}")
    print(f"key file:     {store.path(keys.email)}")
    print(f"did:          {document['id']}")
    print(f"identity key: {document['verificationMethod'][0]['publicKeyJwk']['x']}")
    for key in keys.agreement:
        until = "current" if key.valid_until is None else f"accepted until {key.valid_until:.0f}"
        print(f"agreement:    {key.kid.hex()}  {until}")


def _cmd_keys_init(args: argparse.Namespace) -> int:
    """New keys, or with ``--import-syft-crypto`` the identity syft-crypto made.

    New keys are refused while syft-crypto has an identity for the email (they would replace
    its ``did.json``). Keys are saved only after they are published, so a refused
    publication leaves nothing behind.
    """
    from syft_flwr.crypto import syft_crypto_keys

    store, email = _keys_target(args)
    store.check_free(email, force=args.force)
    if args.import_syft_crypto is None:
        syft_crypto_keys.refuse_existing(email)
        keys = IdentityKeys.generate(email)
    else:
        key_file = Path(args.import_syft_crypto).expanduser() if args.import_syft_crypto else None
        keys, source = syft_crypto_keys.adopt(email, key_file)
        print(f"adopted the syft-crypto identity in {source}")
    _publish_if_asked(args, keys)
    store.save(keys)
    _print_keys(store, keys)
    return 0


def _cmd_keys_show(args: argparse.Namespace) -> int:
    store, email = _keys_target(args)
    _print_keys(store, store.load(email))
    return 0


def _cmd_keys_rotate(args: argparse.Namespace) -> int:
    from syft_flwr.crypto.keys import DEFAULT_GRACE

    store, email = _keys_target(args)
    keys = store.rotate(email, DEFAULT_GRACE if args.grace is None else args.grace)
    _print_keys(store, keys)
    _publish_if_asked(args, keys)
    return 0
