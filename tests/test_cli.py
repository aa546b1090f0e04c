"""The `trainserve` command's own parser (the server commands)."""

from service.cli import _parser, cmd_upkeep


def test_the_upkeep_loop_answers_to_its_old_name_too():
    parser = _parser()
    for name in ("upkeep", "sweeper"):
        args = parser.parse_args([name, "--interval", "2"])
        assert args.run is cmd_upkeep and args.interval == 2.0
