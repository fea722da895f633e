"""daydream.catalog: both layouts, content versions, and every error message in full."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from daydream.catalog.entries import Catalog, Concept, combo_id_for
from daydream.catalog.load import load_catalog
from daydream.errors import CatalogError
from tests.example_catalog import EXAMPLE
from tests.upstream import UPSTREAM_DATA, needs_upstream

TEMPLATE_HEADER = "template_id,template_name,description,parser,generator\n"
SYNTHETIC_UPSTREAM = {
    "concepts_metadata.csv": "concept_id,name\nalpha,Alpha\nbeta,Beta\n",
    "concepts/descriptions-sentence/alpha.txt": "Alpha in a sentence.\n",
    "concepts/descriptions-paragraph/alpha.txt": "  Alpha in a paragraph.\n\n",
    "concepts/descriptions-paragraph/beta.txt": "Beta in a paragraph.",
    "draft_templates.csv": TEMPLATE_HEADER + "d1,Draft one,,essay_idea_last,llm\n",
    "essay_templates.csv": TEMPLATE_HEADER + "e1,Essay one,,,llm\ncopy1,Copy,,,copy\n",
    "evaluation_templates.csv": TEMPLATE_HEADER + "v1,Judge one,,in_last_line,llm\n",
    "templates/draft/d1.txt": "{% for concept in concepts %}{{ concept.name }}{% endfor %}",
    "templates/essay/e1.txt": "{{ links_block }}",
    "templates/evaluation/v1.txt": "{{ response }}\nSCORE: X",
    "llm_models.csv": "id,model,provider,display_name,specialization\n"
    "m1,vendor/m1,vendor,M One,general\n",
    "link_templates.csv": "template_id,template_name,description,active,parser\nold,Old,,false,\n",
}


def make_upstream(root: Path) -> Path:
    """A small upstream data root; returns its 1_raw directory."""
    raw = root / "1_raw"
    for name, text in SYNTHETIC_UPSTREAM.items():
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        (raw / name).write_text(text, encoding="utf-8")
    return raw


def copy_example(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXAMPLE, tmp_path / "cat"))


def copy_upstream(tmp_path: Path) -> Path:
    return Path(shutil.copytree(UPSTREAM_DATA / "1_raw", tmp_path / "data" / "1_raw"))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def error_of(path: Path) -> str:
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    return str(info.value)


# ---------------------------------------------------------------- upstream catalog


@needs_upstream
def test_upstream_catalog_has_its_entries():
    catalog = load_catalog(UPSTREAM_DATA / "1_raw")
    assert catalog.layout == "upstream"
    assert catalog.source == UPSTREAM_DATA / "1_raw"
    assert len(catalog.concepts) == 18
    counts = {
        s: sum(t.stage == s for t in catalog.templates) for s in ("draft", "essay", "evaluation")
    }
    assert counts == {"draft": 22, "essay": 8, "evaluation": 17}
    assert len(catalog.models) == 24
    assert catalog.combos == ()


@needs_upstream
def test_upstream_templates_keep_parser_generator_and_the_0_9_scale():
    catalog = load_catalog(UPSTREAM_DATA / "1_raw")
    copy = catalog.template("essay", "parsed-from-links-v1")
    assert (copy.generator, copy.body, copy.parser) == ("copy", None, "identity")
    assert catalog.template("draft", "deliberate-rolling-thread-v3").parser == "essay_idea_last"
    assert catalog.template("draft", "creative-synthesis-v6").parser == "essay_block_lenient"
    assert catalog.template("draft", "pair-explorer").parser == "identity"
    evaluations = [t for t in catalog.templates if t.stage == "evaluation"]
    assert {(t.parser, t.scale) for t in evaluations} == {("in_last_line", (0.0, 9.0))}
    assert "{{ response }}" in catalog.template("evaluation", "novelty-v2").body
    assert all(t.scale is None for t in catalog.templates if t.stage != "evaluation")


@needs_upstream
def test_upstream_unlisted_bodies_and_missing_combos_are_warnings():
    raw = UPSTREAM_DATA / "1_raw"
    catalog = load_catalog(raw)
    unlisted = [
        "creativity-metrics",
        "daydreaming-verification",
        "iterative-loops",
        "scientific-rigor",
    ]
    assert catalog.warnings == (
        *(
            f"catalog {raw}/templates/evaluation/{name}.txt: no entry in evaluation_templates.csv; ignored"
            for name in unlisted
        ),
        f"catalog {raw}: no combo_mappings.csv here or in {UPSTREAM_DATA}, so no combos "
        "(add one with columns combo_id,concept_id,description_level)",
    )
    assert "creativity-metrics" not in [t.template_id for t in catalog.templates]


@needs_upstream
def test_upstream_concepts_have_levels_and_fall_back_to_paragraph():
    catalog = load_catalog(UPSTREAM_DATA / "1_raw")
    generate = catalog.concept("generate-and-test")
    assert set(generate.descriptions) == {"paragraph"}
    assert generate.text("sentence") == generate.descriptions["paragraph"]
    assert generate.text("article") == generate.descriptions["paragraph"]
    network = catalog.concept("default-mode-network")
    assert set(network.descriptions) == {"sentence", "paragraph", "article"}
    assert network.text("article") != network.text("paragraph")
    assert all(
        not text[0].isspace() and not text[-1].isspace() for text in network.descriptions.values()
    )
    assert sum("article" in c.descriptions for c in catalog.concepts) == 3


@needs_upstream
def test_upstream_models_are_openrouter_with_the_vendor_kept():
    catalog = load_catalog(UPSTREAM_DATA / "1_raw")
    sonnet = catalog.model("sonnet-4")
    assert sonnet.provider == "openrouter"
    assert sonnet.provider_model == "anthropic/claude-sonnet-4"
    assert (sonnet.vendor, sonnet.display_name, sonnet.pool) == (
        "anthropic",
        "Sonnet 4",
        "openrouter",
    )
    assert (sonnet.price_input, sonnet.cost(10, 10)) == (None, None)
    assert catalog.model("gemini_2.5_flash").specialization == "reasoning"
    assert (sonnet.base_url, catalog.providers) == (None, ())


@needs_upstream
def test_upstream_data_root_and_1_raw_give_the_same_catalog():
    assert load_catalog(UPSTREAM_DATA).version == load_catalog(UPSTREAM_DATA / "1_raw").version


@needs_upstream
def test_upstream_combo_mappings_in_the_data_root(tmp_path):
    raw = copy_upstream(tmp_path)
    (raw.parent / "combo_mappings.csv").write_text(
        "combo_id,version,concept_id,description_level,k_max,created_at\n"
        "combo_b,v1,mind-wandering,sentence,2,2025-01-01T00:00:00\n"
        "combo_a,v1,economic-moat,,2,2025-01-01T00:00:00\n"
        "combo_b,v1,data-flywheel,article,2,2025-01-01T00:00:00\n"
        "combo_a,v1,flywheel-effect,,2,2025-01-01T00:00:00\n",
        encoding="utf-8",
    )
    catalog = load_catalog(raw.parent)
    assert [(c.combo_id, c.concept_ids, c.level) for c in catalog.combos] == [
        ("combo_a", ("economic-moat", "flywheel-effect"), "paragraph"),
        ("combo_b", ("mind-wandering", "data-flywheel"), "sentence"),
    ]
    contents = catalog.combo_contents("combo_b")
    assert [c["name"] for c in contents] == ["Mind-Wandering", "Data Flywheel"]
    assert contents[0]["content"] == catalog.concept("mind-wandering").descriptions["sentence"]
    assert len(catalog.warnings) == 4  # the unlisted evaluation bodies only


def test_upstream_combo_mappings_beside_the_catalog(tmp_path):
    raw = make_upstream(tmp_path)
    (raw / "combo_mappings.csv").write_text("combo_id,concept_id\nc1,beta\nc1,alpha\n")
    catalog = load_catalog(raw)
    assert catalog.combo("c1").concept_ids == ("beta", "alpha")
    assert catalog.combo_contents("c1") == [
        {"name": "Beta", "content": "Beta in a paragraph."},
        {"name": "Alpha", "content": "Alpha in a paragraph."},
    ]


def test_synthetic_upstream_catalog(tmp_path):
    raw = make_upstream(tmp_path)
    catalog = load_catalog(tmp_path)  # the data root: 1_raw is found inside it
    assert catalog.source == raw
    assert catalog.concept("alpha").descriptions == {
        "sentence": "Alpha in a sentence.",
        "paragraph": "Alpha in a paragraph.",
    }
    assert catalog.template("essay", "copy1").body is None
    assert catalog.template("draft", "d1").name == "Draft one"
    assert [t.template_id for t in catalog.templates] == ["d1", "e1", "copy1", "v1"]
    assert catalog.warnings == (
        f"catalog {raw}: no combo_mappings.csv here or in {tmp_path}, so no combos "
        "(add one with columns combo_id,concept_id,description_level)",
    )


def test_upstream_catalog_keeps_the_temperature_and_max_tokens_upstream_sent(tmp_path):
    """Upstream's client sent temperature 0.7 and the stage's 20480 max_tokens on every
    call; its CSVs do not say so, so the import must (copy templates make no call)."""
    catalog = load_catalog(make_upstream(tmp_path))
    assert catalog.model("m1").temperature == 0.7
    assert {t.template_id: t.max_tokens for t in catalog.templates} == {
        "d1": 20480,
        "e1": 20480,
        "copy1": None,
        "v1": 20480,
    }
    assert {t.temperature for t in catalog.templates} == {None}  # the model's applies


def test_concept_without_text_is_a_warning_and_shows_its_name(tmp_path):
    raw = make_upstream(tmp_path)
    append(raw / "concepts_metadata.csv", "gamma,Gamma\n")
    (raw / "concepts" / "descriptions-paragraph" / "stray.txt").write_text("x")
    catalog = load_catalog(raw)
    assert catalog.concept("gamma").text("paragraph") == "Gamma"
    assert catalog.warnings[:2] == (
        f'catalog {raw}/concepts_metadata.csv: row 4: concept "gamma" has no text; '
        "drafts will show only its name",
        f"catalog {raw}/concepts/descriptions-paragraph/stray.txt: no entry in "
        "concepts_metadata.csv; ignored",
    )


def test_combo_id_for_matches_upstream():
    concepts = ["default-mode-network", "generator-verifier-gap", "economic-moat"]
    assert combo_id_for(concepts, "paragraph", 6) == "combo_v1_fdd0b6c7ec11"
    assert combo_id_for(list(reversed(concepts)), "paragraph", 6) == "combo_v1_fdd0b6c7ec11"
    assert combo_id_for(concepts, "sentence", 6) != "combo_v1_fdd0b6c7ec11"


# ---------------------------------------------------------------- our example catalog


def test_example_catalog():
    catalog = load_catalog(EXAMPLE)
    assert (catalog.layout, catalog.source, catalog.warnings) == ("daydream", EXAMPLE, ())
    assert len(catalog.concepts) == 6
    assert [c.combo_id for c in catalog.combos] == [
        "fungal-market",
        "memory-codes",
        "drifting-tides",
        "noisy-minds",
    ]
    assert [(t.stage, t.template_id, t.parser, t.generator) for t in catalog.templates] == [
        ("draft", "rolling-idea", "essay_idea_last", "llm"),
        ("draft", "free-notes", "identity", "llm"),
        ("essay", "focused-essay", "identity", "llm"),
        ("essay", "direct-essay", "identity", "llm"),
        ("essay", "idea-verbatim", "identity", "copy"),
        ("evaluation", "novelty-rubric", "score", "llm"),
        ("evaluation", "feasibility-rubric", "score", "llm"),
        ("evaluation", "clarity-five", "score", "llm"),
    ]
    assert '<essay-idea stage="1">\n' in catalog.template("draft", "rolling-idea").body
    assert "{{ links_block }}" in catalog.template("essay", "focused-essay").body
    assert catalog.template("essay", "idea-verbatim").body is None
    novelty = catalog.template("evaluation", "novelty-rubric")
    assert novelty.scale == (0.0, 10.0)
    assert novelty.body.rstrip().endswith("SCORE: X")
    rolling = catalog.template("draft", "rolling-idea")
    assert (rolling.temperature, rolling.max_tokens, rolling.min_lines) == (0.9, 6000, 5)


def test_example_models_and_providers():
    catalog = load_catalog(EXAMPLE)
    assert [(m.model_id, m.provider, m.pool) for m in catalog.models] == [
        ("offline-small", "offline", "offline"),
        ("offline-large", "offline", "offline"),
        ("sonnet-4.5", "openrouter", "openrouter"),
        ("llama3.2-3b", "ollama", "local-gpu"),
    ]
    sonnet = catalog.model("sonnet-4.5")
    assert sonnet.provider_model == "anthropic/claude-sonnet-4.5"
    assert (sonnet.price_input, sonnet.price_output) == (3.0 / 1_000_000, 15.0 / 1_000_000)
    assert sonnet.cost(1_000_000, 1_000_000) == pytest.approx(18.0)
    assert all(m.base_url is None for m in catalog.models)
    lab = catalog.provider("lab-vllm")
    assert (lab.base_url, lab.api_key_env) == ("http://localhost:8000/v1", "LAB_VLLM_API_KEY")


def test_models_get_the_base_url_of_a_declared_provider_or_their_own(tmp_path):
    root = copy_example(tmp_path)
    append(
        root / "models.yaml",
        "\n- {id: lab-qwen, provider: lab-vllm, model: Qwen/Qwen3-8B}"
        "\n- {id: box, provider: mybox, model: m, base_url: 'http://box:9000/v1'}"
        "\n- {id: far-qwen, provider: lab-vllm, model: q, base_url: 'https://far/v1'}\n",
    )
    catalog = load_catalog(root)
    assert [(m.provider, m.pool, m.base_url) for m in catalog.models[4:]] == [
        ("lab-vllm", "lab-vllm", "http://localhost:8000/v1"),
        ("mybox", "mybox", "http://box:9000/v1"),
        ("lab-vllm", "lab-vllm", "https://far/v1"),
    ]


def test_example_article_level_falls_back_per_concept():
    catalog = load_catalog(EXAMPLE)
    codes, dreaming = catalog.combo_contents("noisy-minds")
    assert codes["content"] == catalog.concept("error-correcting-codes").descriptions["article"]
    assert dreaming["content"] == catalog.concept("daydreaming").descriptions["paragraph"]


# ---------------------------------------------------------------- versions


def test_versions_are_stable_across_loads_and_copies(tmp_path):
    first, second = load_catalog(EXAMPLE), load_catalog(copy_example(tmp_path))
    assert first.version == second.version
    assert [t.version for t in first.templates] == [t.version for t in second.templates]
    assert all(
        v.startswith("b2:") and len(v) == 35 for v in [first.version, first.models[0].version]
    )
    entries = (*first.concepts, *first.templates, *first.models)
    assert len({e.version for e in entries}) == len(entries)  # distinct entries, distinct versions


def test_editing_a_body_changes_only_that_templates_version(tmp_path):
    before = load_catalog(EXAMPLE)
    root = copy_example(tmp_path)
    append(root / "templates" / "essay" / "focused-essay.j2", "Be brief.\n")
    after = load_catalog(root)
    changed = [
        t.template_id
        for t, u in zip(before.templates, after.templates, strict=True)
        if t.version != u.version
    ]
    assert changed == ["focused-essay"]
    assert after.version != before.version
    assert [c.version for c in after.concepts] == [c.version for c in before.concepts]


def test_editing_a_concept_or_a_price_changes_its_version(tmp_path):
    root = copy_example(tmp_path)
    before = load_catalog(root)
    edit(root / "concepts.yaml", "Fungal threads", "Fungal filaments")
    edit(root / "models.yaml", "price_input_per_mtok: 3.0", "price_input_per_mtok: 2.5")
    after = load_catalog(root)
    assert after.concept("mycelial-networks").version != before.concept("mycelial-networks").version
    assert after.concept("tidal-energy").version == before.concept("tidal-energy").version
    assert after.model("sonnet-4.5").version != before.model("sonnet-4.5").version


def test_a_template_extra_is_loaded_recorded_and_versioned(tmp_path):
    import json

    from daydream.catalog.recording import import_catalog
    from daydream.db.connection import connect

    root = copy_example(tmp_path)
    before = load_catalog(root).template("draft", "rolling-idea")
    edit(root / "templates.yaml", "    temperature: 0.9", "    temperature: 0.9\n    extra: {stop: [END]}")
    after = load_catalog(root).template("draft", "rolling-idea")
    assert after.extra == {"stop": ["END"]}
    assert after.version != before.version
    conn = connect(tmp_path / "x.db")
    import_catalog(conn, load_catalog(root))
    (settings,) = conn.execute(
        "SELECT v.settings FROM templates t JOIN template_versions v USING (version)"
        " WHERE t.template_id = 'rolling-idea'"
    ).fetchone()
    assert json.loads(settings)["extra"] == {"stop": ["END"]}


def test_a_template_without_extra_keeps_the_version_it_had_before_extra_existed():
    from daydream.catalog.entries import Template

    template = Template(
        stage="draft",
        template_id="notes",
        name="Notes",
        body="Hello {{ concepts }}",
        parser="identity",
        temperature=0.3,
        max_tokens=400,
    )
    # The version this template had when templates had no ``extra`` field.
    assert template.version == "b2:f09f635e03d88e28ed1d6761b88049bd"


def test_identical_content_gives_identical_versions():
    a = Concept(concept_id="x", name="X", descriptions={"sentence": "s", "paragraph": "p"})
    b = Concept(concept_id="x", name="X", descriptions={"paragraph": "p", "sentence": "s"})
    assert a.version == b.version
    assert a.version != Concept(concept_id="x", name="X", descriptions={"sentence": "s"}).version


def test_lookup_of_an_unknown_id_names_the_known_ones():
    catalog = load_catalog(EXAMPLE)
    with pytest.raises(CatalogError) as info:
        catalog.template("essay", "nope")
    assert str(info.value) == (
        f'catalog {EXAMPLE}: no essay template "nope" (known: direct-essay, focused-essay, idea-verbatim)'
    )
    with pytest.raises(CatalogError) as info:
        catalog.combo("nope")
    assert str(info.value) == (
        f'catalog {EXAMPLE}: no combo "nope" '
        "(known: drifting-tides, fungal-market, memory-codes, noisy-minds)"
    )


def test_catalog_is_frozen():
    catalog = load_catalog(EXAMPLE)
    with pytest.raises(ValueError):
        catalog.models[0].pool = "other"  # type: ignore[misc]
    assert isinstance(catalog, Catalog)


# ---------------------------------------------------------------- errors: either layout


def test_not_a_directory(tmp_path):
    assert error_of(tmp_path / "nope") == (
        f"catalog {tmp_path}/nope: not a directory (give the catalog directory)"
    )


def test_a_directory_without_a_catalog(tmp_path):
    assert error_of(tmp_path) == (
        f"catalog {tmp_path}: no concepts_metadata.csv (upstream layout, here or in 1_raw/) "
        "nor concepts.yaml (daydream layout) (give a catalog directory)"
    )


# ---------------------------------------------------------------- errors: upstream layout

UPSTREAM_ERRORS = [
    (
        "draft_templates.csv",
        "d1,Draft one,,essay_idea_last,llm\n",
        "d1,Draft one,,essay_idea_last,llm\nfoo,Foo,,,llm\n",
        'draft_templates.csv: row 3: template "foo" has no body file templates/draft/foo.txt '
        "(add it, or set generator=copy)",
    ),
    (
        "draft_templates.csv",
        "essay_idea_last,llm",
        "essay_idea_last,ai",
        'draft_templates.csv: row 2: template "d1": generator "ai" is unknown (use llm or copy)',
    ),
    (
        "draft_templates.csv",
        "essay_idea_last,llm",
        "essay_idea_last,copy",
        'draft_templates.csv: row 2: template "d1": generator copy is only for essay templates '
        "(use llm)",
    ),
    (
        "draft_templates.csv",
        "essay_idea_last",
        "essay_idea_first",
        'draft_templates.csv: row 2: template "d1": parser "essay_idea_first" is not valid for '
        "draft templates (use one of: identity, essay_block, essay_block_lenient, essay_idea_last)",
    ),
    (
        "evaluation_templates.csv",
        "in_last_line",
        "",
        'evaluation_templates.csv: row 2: template "v1": parser "identity" is not valid for '
        "evaluation templates (use one of: score, in_last_line)",
    ),
    (
        "essay_templates.csv",
        "copy1,Copy",
        "E1,Copy",
        'essay_templates.csv: row 3: template "E1" repeats "e1" '
        "(ids must differ ignoring case; rename or remove one)",
    ),
    (
        "concepts_metadata.csv",
        "concept_id,name\n",
        "concept_id,name,active\n",
        'concepts_metadata.csv: legacy column "active" is not supported '
        "(delete it and the rows you do not want)",
    ),
    (
        "essay_templates.csv",
        "parser,generator\n",
        "parser,generator,active\n",
        'essay_templates.csv: legacy column "active" is not supported '
        "(delete it and the rows you do not want)",
    ),
    (
        "llm_models.csv",
        "id,model,",
        "id,name,",
        'llm_models.csv: no column "model" (the header must include id,model)',
    ),
    (
        "llm_models.csv",
        "m1,vendor/m1,",
        "m1,,",
        'llm_models.csv: row 2: model "m1": provider_model is empty (fill it in)',
    ),
    (
        "concepts_metadata.csv",
        "beta,Beta",
        "beta gamma,Beta",
        'concepts_metadata.csv: row 3: concept_id "beta gamma" may use only letters, digits, '
        '".", "_" and "-" (rename it)',
    ),
    (
        "concepts_metadata.csv",
        "beta,Beta",
        "beta,",
        'concepts_metadata.csv: row 3: concept "beta": name is empty (fill it in)',
    ),
    (
        "essay_templates.csv",
        "e1,Essay one,,,llm",
        'e1,Essay one,"a, b",,llm,extra',
        "essay_templates.csv: row 2: 6 cells but the header has 5 (quote commas in values)",
    ),
    (
        "essay_templates.csv",
        "e1,Essay one,,,llm",
        'e1,"Essay one,,,llm',
        "essay_templates.csv: row 2: unexpected end of data (fix the quoting)",
    ),
]


@pytest.mark.parametrize(("name", "old", "new", "message"), UPSTREAM_ERRORS)
def test_upstream_errors(tmp_path, name, old, new, message):
    raw = make_upstream(tmp_path)
    edit(raw / name, old, new)
    assert error_of(raw) == f"catalog {raw}/{message}"


def test_upstream_missing_file(tmp_path):
    raw = make_upstream(tmp_path)
    (raw / "llm_models.csv").unlink()
    assert (
        error_of(raw) == f"catalog {raw}/llm_models.csv: missing (add it with the columns id,model)"
    )


def test_upstream_legacy_link_templates_are_ignored(tmp_path):
    raw = make_upstream(tmp_path)
    assert "active" in (raw / "link_templates.csv").read_text()
    assert [t.template_id for t in load_catalog(raw).templates] == ["d1", "e1", "copy1", "v1"]


def test_upstream_copy_template_with_a_body_file_warns(tmp_path):
    raw = make_upstream(tmp_path)
    (raw / "templates" / "essay" / "copy1.txt").write_text("unused")
    catalog = load_catalog(raw)
    assert catalog.template("essay", "copy1").body is None
    assert catalog.warnings[0] == (
        f"catalog {raw}/templates/essay/copy1.txt: ignored, template copy1 is a copy"
    )


def test_upstream_combo_with_unknown_concepts(tmp_path):
    raw = make_upstream(tmp_path)
    (tmp_path / "combo_mappings.csv").write_text(
        "combo_id,concept_id,description_level\nc1,alpha,paragraph\nc1,zeta,\nc1,eta,\n"
    )
    assert error_of(raw) == (
        f'catalog {tmp_path}/combo_mappings.csv: row 2: combo "c1": unknown concepts zeta, eta '
        "(add them to concepts_metadata.csv or fix the ids)"
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "c1,alpha,chapter\n",
            'row 2: combo "c1": level "chapter" is unknown (use one of: sentence, paragraph, article)',
        ),
        (
            "c1,alpha,\nc1,alpha,\n",
            'row 2: combo "c1": lists alpha more than once (list each once)',
        ),
        ("c1,,\n", 'row 2: combo "c1": concept_id is empty (fill it in)'),
    ],
)
def test_upstream_combo_errors(tmp_path, rows, message):
    raw = make_upstream(tmp_path)
    (raw / "combo_mappings.csv").write_text("combo_id,concept_id,description_level\n" + rows)
    assert error_of(raw) == f"catalog {raw}/combo_mappings.csv: {message}"


def test_upstream_text_that_is_not_utf8(tmp_path):
    raw = make_upstream(tmp_path)
    (raw / "templates" / "essay" / "e1.txt").write_bytes(b"caf\xe9 {{ links_block }}")
    assert error_of(raw) == (
        f"catalog {raw}/templates/essay/e1.txt: not valid UTF-8 (save it as UTF-8)"
    )


# ---------------------------------------------------------------- errors: daydream layout

DAYDREAM_ERRORS = [
    (
        "templates.yaml",
        "  - id: free-notes\n",
        "  - id: loose-notes\n",
        'templates.yaml: draft[1] template "loose-notes" has no body file '
        "templates/draft/loose-notes.j2 (add it, or set generator: copy)",
    ),
    (
        "combos.yaml",
        "[mycelial-networks, market-making]",
        "[mycelial-networks, stock-picking, dowsing]",
        'combos.yaml: [0] combo "fungal-market": unknown concepts stock-picking, dowsing '
        "(add them to concepts.yaml or fix the ids)",
    ),
    (
        "combos.yaml",
        "  level: sentence",
        "  level: haiku",
        'combos.yaml: [2] combo "drifting-tides": level "haiku" is unknown '
        "(use one of: sentence, paragraph, article)",
    ),
    (
        "combos.yaml",
        "[spaced-repetition, error-correcting-codes]",
        "[]",
        'combos.yaml: [1] combo "memory-codes": concepts: List should have at least 1 item '
        "after validation, not 0 (fix the value)",
    ),
    (
        "concepts.yaml",
        "- id: tidal-energy",
        "- id: Daydreaming",
        'concepts.yaml: concept "Daydreaming" repeats "daydreaming" '
        "(ids must differ ignoring case; rename or remove one)",
    ),
    (
        "templates.yaml",
        "    parser: essay_idea_last",
        "    parser: score",
        'templates.yaml: draft[0] template "rolling-idea": parser "score" is not valid for draft '
        "templates (use one of: identity, essay_block, essay_block_lenient, essay_idea_last)",
    ),
    (
        "templates.yaml",
        "    generator: copy",
        "    generator: paste",
        'templates.yaml: essay[2] template "idea-verbatim": generator "paste" is unknown '
        "(use llm or copy)",
    ),
    (
        "templates.yaml",
        "    parser: score\n    scale: [0, 10]\n    temperature: 0.0\n    max_tokens: 2000\n\n"
        "  - id: feasibility",
        "    parser: score\n    temperature: 0.0\n    max_tokens: 2000\n\n  - id: feasibility",
        'templates.yaml: evaluation[0] template "novelty-rubric": scale must be [low, high] '
        "matching the rubric, e.g. [0, 10]",
    ),
    (
        "templates.yaml",
        "    scale: [0, 10]\n    temperature: 0.0\n    max_tokens: 2000\n\n  - id: feasibility",
        "    scale: [10, 0]\n    temperature: 0.0\n    max_tokens: 2000\n\n  - id: feasibility",
        'templates.yaml: evaluation[0] template "novelty-rubric": scale must be [low, high] '
        "matching the rubric, e.g. [0, 10]",
    ),
    (
        "templates.yaml",
        "    parser: essay_idea_last\n",
        "    parser: essay_idea_last\n    scale: [0, 10]\n",
        'templates.yaml: draft[0] template "rolling-idea": scale is only for evaluation templates '
        "(remove it)",
    ),
    (
        "templates.yaml",
        "    max_tokens: 6000",
        "    max_tokens: lots",
        'templates.yaml: draft[0] template "rolling-idea": max_tokens: Input should be a valid '
        "integer (fix the value)",
    ),
    (
        "templates.yaml",
        "    temperature: 0.9",
        "    temprature: 0.9",
        'templates.yaml: draft[0] template "rolling-idea": unknown key "temprature" (known: id, '
        "name, description, parser, generator, scale, temperature, max_tokens, min_lines, seed, extra)",
    ),
    (
        "templates.yaml",
        "draft:",
        "drafts:",
        "templates.yaml: must map draft, essay and evaluation to lists of templates",
    ),
    (
        "models.yaml",
        "price_input_per_mtok: 3.0",
        "price_input_per_mtok: $3",
        'models.yaml: [2] model "sonnet-4.5": price_input_per_mtok: Input should be a valid number '
        "(fix the value)",
    ),
    (
        "models.yaml",
        "price_output_per_mtok: 15.0",
        "price_output_per_mtok: -15.0",
        'models.yaml: [2] model "sonnet-4.5": price_output_per_mtok: Input should be greater than '
        "or equal to 0 (fix the value)",
    ),
    (
        "models.yaml",
        "  provider: ollama",
        "  provider: olama",
        'models.yaml: [3] model "llama3.2-3b": unknown provider "olama" (known: lab-vllm, '
        "llamacpp, lmstudio, offline, ollama, openai, openrouter, vllm; "
        "declare it in providers.yaml or give the model a base_url)",
    ),
    (
        "models.yaml",
        "  model: small\n",
        "",
        'models.yaml: [0] model "offline-small": model is missing (add it)',
    ),
    (
        "models.yaml",
        "- id: offline-large",
        "- id: offline large",
        'models.yaml: [1]: id "offline large" may use only letters, digits, ".", "_" and "-" '
        "(rename it)",
    ),
    (
        "providers.yaml",
        "  api_key_env: LAB_VLLM_API_KEY",
        "  api_key_env: sk-or-v1-0123456789abcdef",
        'providers.yaml: provider "lab-vllm": api_key_env must name an environment variable such '
        "as MY_API_KEY (the key itself belongs in the environment, never in the catalog)",
    ),
    (
        "providers.yaml",
        "  base_url: http://localhost:8000/v1\n",
        "",
        'providers.yaml: provider "lab-vllm": base_url is missing (add it)',
    ),
    (
        "providers.yaml",
        "  base_url: http://localhost:8000/v1",
        "  base_url: localhost:8000",
        'providers.yaml: provider "lab-vllm": base_url must be an http(s) URL such as '
        "http://localhost:8000/v1",
    ),
]


@pytest.mark.parametrize(("name", "old", "new", "message"), DAYDREAM_ERRORS)
def test_daydream_errors(tmp_path, name, old, new, message):
    root = copy_example(tmp_path)
    edit(root / name, old, new)
    assert error_of(root) == f"catalog {root}/{message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- id: m\n  provider: offline\n  model: a\n  model: b\n",
            'invalid YAML at line 4, column 3: duplicate key "model" (fix the syntax)',
        ),
        (
            "- id: m\n  model: [a\n  provider: offline\n",
            "invalid YAML at line 3, column 11: expected ',' or ']', but got ':' (fix the syntax)",
        ),
        ("models: []\n", "must be a list of models"),
        ("- just-an-id\n", "[0]: must be a mapping with an id and the model's keys"),
    ],
)
def test_daydream_bad_yaml(tmp_path, text, message):
    root = copy_example(tmp_path)
    (root / "models.yaml").write_text(text)
    assert error_of(root) == f"catalog {root}/models.yaml: {message}"


def test_daydream_concept_without_text(tmp_path):
    root = copy_example(tmp_path)
    append(root / "concepts.yaml", "\n- id: empty\n  name: Empty\n  sentence: '  '\n")
    assert error_of(root) == (
        f'catalog {root}/concepts.yaml: [6] concept "empty": no text '
        "(add sentence, paragraph or article)"
    )


def test_daydream_missing_file(tmp_path):
    root = copy_example(tmp_path)
    (root / "combos.yaml").unlink()
    assert error_of(root) == (
        f"catalog {root}/combos.yaml: missing (add it; docs/catalog.md shows its shape)"
    )


def test_daydream_unlisted_body_and_copy_body_are_warnings(tmp_path):
    root = copy_example(tmp_path)
    (root / "templates" / "draft" / "old-idea.j2").write_text("{{ concepts }}")
    (root / "templates" / "essay" / "idea-verbatim.j2").write_text("unused")
    catalog = load_catalog(root)
    assert catalog.warnings == (
        f"catalog {root}/templates/draft/old-idea.j2: no entry in templates.yaml; ignored",
        f"catalog {root}/templates/essay/idea-verbatim.j2: ignored, template idea-verbatim is a copy",
    )
    assert catalog.template("essay", "idea-verbatim").body is None


def test_imported_models_carry_their_settings_and_key_variable_name(tmp_path):
    """What the worker reads from `models.settings`: generation settings, the endpoint, and
    the NAME of the provider's key variable from providers.yaml (never a key)."""
    import json

    from daydream.catalog.recording import import_catalog
    from daydream.db.connection import connect

    root = copy_example(tmp_path)
    models = root / "models.yaml"
    models.write_text(
        models.read_text(encoding="utf-8")
        + "\n- id: lab-model\n  provider: lab-vllm\n  model: org/lab\n  seed: 7\n  max_tokens: 900\n",
        encoding="utf-8",
    )
    conn = connect(tmp_path / "x.db")
    import_catalog(conn, load_catalog(root))
    settings = json.loads(
        conn.execute("SELECT settings FROM models WHERE model_id = 'lab-model'").fetchone()[0]
    )
    assert settings == {
        "api_key_env": "LAB_VLLM_API_KEY",
        "base_url": "http://localhost:8000/v1",
        "max_tokens": 900,
        "seed": 7,
    }
