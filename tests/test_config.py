import pytest
import yaml

from seqgan.config import Config, ConfigError, describe, load_config, parse_overrides, save_config


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\ngenerator:\n  hidden_dim: 48\n")
    cfg = load_config(
        path,
        [
            "generator.hidden_dim=64",
            "discriminator.filter_sizes=[2, 3]",
            "discriminator.num_filters=[5, 6]",
            "data.valid=null",
            "pretrain.lr=1e-3",
        ],
    )
    assert cfg.seed == 3
    assert cfg.generator.hidden_dim == 64  # command line wins over the file
    assert cfg.discriminator.filter_sizes == [2, 3]
    assert cfg.data.valid is None
    assert cfg.pretrain.lr == pytest.approx(1e-3)
    assert cfg.generator.embed_dim == Config().generator.embed_dim  # untouched default


def test_int_accepted_for_float():
    cfg = load_config(None, ["pretrain.lr=1"])
    assert isinstance(cfg.pretrain.lr, float)


@pytest.mark.parametrize(
    "override, key",
    [
        ("generator.hiden_dim=3", "generator.hiden_dim"),
        ("nonsense=1", "nonsense"),
        ("generator.hidden_dim=abc", "generator.hidden_dim"),
        ("generator.hidden_dim=1.5", "generator.hidden_dim"),
        ("generator.kind=gru", "generator.kind"),
        ("data.lowercase=3", "data.lowercase"),
        ("discriminator.filter_sizes=[2, x]", "discriminator.filter_sizes[1]"),
    ],
)
def test_rejects_unknown_keys_and_wrong_types(override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, [override])


def test_rejects_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("pretrain:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match="pretrain.epochz"):
        load_config(path)


def test_value_checks():
    with pytest.raises(ConfigError, match="max_len"):
        load_config(None, ["data.max_len=1"])
    with pytest.raises(ConfigError, match="filter_sizes"):
        load_config(None, ["discriminator.filter_sizes=[2]"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["pretrain.epochs"])


def test_resolved_config_round_trip(tmp_path):
    cfg = load_config(None, ["seed=7", "generator.kind=transformer"])
    save_config(cfg, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["seed"] == 7
    assert load_config(tmp_path / "config.yaml") == cfg


def test_describe_documents_every_key():
    text = describe()
    assert "generator.hidden_dim (int, >= 1, default 32): LSTM / seq2seq: hidden state size." in text
    assert "seqgan.num_rollouts (int, >= 0, default 16): Monte-Carlo completions per prefix" in text
    assert "data.overlong" in text


def test_shipped_configs_load(root):
    configs = sorted((root / "recipes/configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path)
        first = path.read_text().splitlines()[0]
        assert first.startswith("#"), f"{path.name} needs a header comment with its command"
        assert "python recipes/" in path.read_text().split("\n\n")[0] or "python" in path.read_text()[:400]
