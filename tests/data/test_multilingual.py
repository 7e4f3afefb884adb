"""Multilingual offline sources (manual pages) and per-language stop words, without apt or the network.

Rendering runs the machine's groff on roff pages written here (skipped where
groff is missing); the pull runs against .deb files built here and passed as
a wheelhouse, so apt-get is never called; the sources read a small asset
folder written into the test's own ``$CALIBENCH_HOME``.  One integration test
uses the real pulled asset and the bundled SmolLM2 tokenizer, and is skipped
where the asset is not pulled.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from calibench.assets import ASSETS, MANIFEST_NAME, asset_path, pull
from calibench.assets.catalog import MANPAGE_LANGUAGES, MANPAGE_SETS, MANPAGES
from calibench.assets.manpages import find_pages, is_alias, page_name, plain_text, render_pages, render_roff
from calibench.assets.store import DebianPackage, deb_control
from calibench.core.errors import CalibenchError
from calibench.core.paths import assets_dir
from calibench.data.sources import get_source
from calibench.data.sources.manpages import clean_page, is_boilerplate_heading
from calibench.data.sources.multilingual import ManPageSource, page_documents, read_pages
from calibench.data.sources.offline import is_heldout

needs_groff = pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")

ROFF_DE = r""".\" a tiny page written for the test
.TH KATZE 1 "Mai 2024" "katze 1.0" "Dienstprogramme für Benutzer"
.SH BEZEICHNUNG
katze \- gibt Dateien aus
.SH BESCHREIBUNG
\fBkatze\fP liest die angegebenen Dateien und schreibt ihren Inhalt auf die
Standardausgabe. Die Übersetzung dieser Handbuchseite ist ausführlich,
damit der Absatz über mehrere Zeilen umbrochen wird und Donaudampfschifffahrtsgesellschaftskapitäne
nicht getrennt werden.
.PP
Ein zweiter Absatz.
.TP
\fB\-n\fR, \fB\-\-number\fR
alle Zeilen nummerieren
.SH ÜBERSETZUNG
Die deutsche Übersetzung wurde von Jemand <jemand@example.org> erstellt.
"""

ROFF_JA = r""".TH NEKO 1 "2024" "neko 1.0"
.SH 名前
neko \- ファイルを連結して表示する
.SH 説明
このコマンドは指定されたファイルを順番に読み込み、その内容を標準出力に書き出します。ファイルが指定されなかった場合には標準入力から読み込みます。この段落は一行に収まらないほど長く書かれています。
"""


# --- rendering ---------------------------------------------------------------------


def test_plain_text_strips_overstrikes_and_sgr():
    assert plain_text("B\bBo\bol\bld and _\bu_\bn_\bd_\be_\br") == "Bold and under"
    assert plain_text("\x1b[1mbold\x1b[0m plain") == "bold plain"


def test_page_names_and_aliases():
    assert page_name(Path("ls.1.gz")) == ("ls", "1")
    assert page_name(Path("sigevent.3type.gz")) == ("sigevent", "3type")
    assert page_name(Path("systemd.exec.5")) == ("systemd.exec", "5")
    assert is_alias('.\\" comment\n.so man1/cat.1\n')
    assert not is_alias(ROFF_DE)


@needs_groff
def test_render_a_german_page():
    text = render_roff(ROFF_DE, "de")
    assert "\b" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0].split()[0] == "KATZE(1)" and lines[0].split()[-1] == "KATZE(1)"
    assert "BESCHREIBUNG" in lines
    assert any("katze liest die angegebenen Dateien" in line for line in lines)  # bold stripped, UTF-8 kept
    assert "Übersetzung" in text and "Donaudampfschifffahrtsgesellschaftskapitäne" in text  # not hyphenated
    assert all(len(line) <= 78 or " " not in line.strip() for line in lines)
    assert not any("  " in line.strip() for line in lines if "Standardausgabe" in line)  # ragged right, no padding


@needs_groff
def test_render_and_clean_a_japanese_page():
    rendered = render_roff(ROFF_JA, "ja")
    body = [line for line in rendered.splitlines() if "このコマンド" in line or "標準" in line]
    assert body  # groff broke the long paragraph between ideographs...
    cleaned = clean_page(rendered)
    # ...and cleaning rejoins it: a break inside a Japanese word is not a space
    assert "その内容を標準出力に書き出します。ファイルが指定されなかった場合には標準入力から読み込みます。" in cleaned
    assert cleaned.startswith("名前\nneko - ファイルを連結して表示する\n\n説明\n")


@needs_groff
def test_render_pages_skips_aliases_and_non_utf8(tmp_path):
    man1 = tmp_path / "man" / "man1"
    man1.mkdir(parents=True)
    (man1 / "katze.1.gz").write_bytes(gzip.compress(ROFF_DE.encode("utf-8")))
    (man1 / "kater.1").write_text(".so man1/katze.1\n", encoding="utf-8")
    (man1 / "alt.1").write_bytes("Stra\xdfe".encode("latin-1"))
    (man1 / "mieze.1.gz").symlink_to("katze.1.gz")
    pages, notes = find_pages(tmp_path / "man")
    assert [p.page for p in pages] == ["alt", "kater", "katze"]
    assert notes == {"skipped: alias (symlink)": 1}
    rendered = render_pages(pages, "de", "test", workers=2)
    assert [(p["page"], p["section"]) for p in rendered.pages] == [("katze", "1")]
    assert rendered.notes == {"skipped: alias (.so)": 1, "skipped: not UTF-8": 1}
    assert rendered.chars == len(rendered.pages[0]["text"])


# --- cleaning ----------------------------------------------------------------------

RENDERED = """KATZE(1)             Dienstprogramme für Benutzer             KATZE(1)



BEZEICHNUNG
       katze - gibt Dateien aus



BESCHREIBUNG
       Ein Absatz, der über zwei
       Zeilen geht.

       -n, --number
              alle Zeilen nummerieren

ÜBERSETZUNG
       Die deutsche Übersetzung wurde von Jemand erstellt.

katze 1.0                        Mai 2024                         KATZE(1)
"""


def test_clean_page_drops_header_footer_credits_and_indent():
    assert clean_page(RENDERED) == (
        "BEZEICHNUNG\nkatze - gibt Dateien aus\n\n"
        "BESCHREIBUNG\nEin Absatz, der über zwei\nZeilen geht.\n\n"
        "-n, --number\n       alle Zeilen nummerieren"
    )


def test_clean_page_rejoins_split_words_only_inside_paragraphs():
    text = "説明\n       これは日本\n       語です。\n       /dev/null\n       /dev/zero\n"
    assert clean_page(text) == "説明\nこれは日本語です。\n/dev/null\n/dev/zero"
    hyphenated = "NAME\n       eine Handbuch\u2010\n       seite\n"
    assert clean_page(hyphenated) == "NAME\neine Handbuchseite"


def test_boilerplate_headings_of_every_language():
    for heading in (
        "ÜBERSETZUNG",
        "TRADUCTION",
        "TRADUCCIÓN",
        "TŁUMACZENIE",
        "ПЕРЕВОД",
        "この文書について",
        "跋",
        "[中文版维护人]",
        "《中国 Linux 论坛 man 手册页翻译计划》:",
    ):
        assert is_boilerplate_heading(heading), heading
    for heading in ("BESCHREIBUNG", "DESCRIPTION", "説明", "描述", "SEE ALSO"):
        assert not is_boilerplate_heading(heading), heading


# --- the asset: a pull from .deb files built here ------------------------------------


def _ar_member(name: str, data: bytes) -> bytes:
    header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode("ascii")
    return header + data + (b"\n" if len(data) % 2 else b"")


def _tar(files: dict[str, bytes], compression: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_deb(folder: Path, package: DebianPackage, files: dict[str, bytes]) -> Path:
    """A minimal .deb as dpkg-deb builds it: ar of debian-binary, control.tar.gz, data.tar.xz."""
    control = f"Package: {package.name}\nVersion: {package.version}\nArchitecture: all\n".encode()
    deb = (
        b"!<arch>\n"
        + _ar_member("debian-binary", b"2.0\n")
        + _ar_member("control.tar.gz", _tar({"./control": control}, "gz"))
        + _ar_member("data.tar.xz", _tar(files, "xz"))
    )
    path = folder / f"{package.name}_{package.version.replace(':', '%3a')}_all.deb"
    path.write_bytes(deb)
    return path


def _page_for(language: str, index: int) -> str:
    return (
        f'.TH SEITE{index} 1 "2024" "test"\n.SH NAME\nseite{index} \\- {language} page {index}\n'
        f".SH DESCRIPTION\nText of page {index} in {language}, long enough to be a paragraph.\n"
    )


def test_deb_control_reads_the_pinned_version(tmp_path):
    package = DebianPackage("manpages-pl", "1:4.18.1-1")
    deb = make_deb(tmp_path, package, {"./usr/share/man/pl/man1/x.1.gz": b""})
    assert deb_control(deb)["Version"] == "1:4.18.1-1"
    assert package.requirement == "manpages-pl=1:4.18.1-1"


@needs_groff
def test_pull_from_a_folder_of_debs_renders_every_language(tmp_path):
    house = tmp_path / "debs"
    house.mkdir()
    for mset in MANPAGE_SETS:
        base = f"./usr/share/man/{mset.man_dir}/" if mset.man_dir else "./usr/share/man/"
        files = {f"{base}man1/seite{i}.1.gz": gzip.compress(_page_for(mset.language, i).encode()) for i in range(3)}
        files[f"./usr/share/doc/{mset.package.name}/copyright"] = b"not a page\n"
        make_deb(house, mset.package, files)
    dest = pull(MANPAGES, wheelhouse=house, progress=False)
    assert asset_path(MANPAGES) == dest
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    assert set(manifest["languages"]) == set(MANPAGE_LANGUAGES)
    assert manifest["packages"]["manpages-pl"] == "1:4.18.1-1"
    for language in MANPAGE_LANGUAGES:
        pages = read_pages(dest, language)
        assert [p["page"] for p in pages] == ["seite0", "seite1", "seite2"]
        assert manifest["languages"][language]["pages"] == 3
        assert f"Text of page 1 in {language}" in " ".join(page_documents(pages)[1].split())
    assert not list(assets_dir().glob(".pull-*"))  # the work area is gone


def test_pull_without_apt_says_what_to_do(monkeypatch):
    import calibench.assets.store as store

    monkeypatch.setattr(store.shutil, "which", lambda name: None)
    with pytest.raises(CalibenchError) as err:
        pull(MANPAGES, progress=False)
    message = str(err.value)
    assert message.startswith("could not download Debian package manpages=6.03-2: apt-get is not available")
    assert "on a machine without apt" in message and "--wheelhouse" in message and "\n" not in message
    assert asset_path(MANPAGES) is None


def test_pull_with_a_wheelhouse_lacking_the_deb(tmp_path):
    with pytest.raises(CalibenchError, match=r"could not download Debian package manpages=6\.03-2: it is not in"):
        pull(MANPAGES, wheelhouse=tmp_path, progress=False)


def test_asset_is_registered_with_pinned_debian_packages():
    asset = ASSETS.get(MANPAGES)
    assert asset.kind == "data"
    assert all(isinstance(p, DebianPackage) and p.version for p in asset.packages)
    assert [p.name for p in asset.packages] == [
        "manpages", "manpages-de", "manpages-fr", "manpages-es", "manpages-pl", "manpages-ru", "manpages-ja",
        "manpages-zh",
    ]  # fmt: skip


# --- the sources over a small asset folder ------------------------------------------

WORDS = "der die das und oder nicht Datei Befehl Option Zeile Ausgabe lesen schreiben zeigen".split()


def _rendered_page(index: int) -> str:
    import random

    rnd = random.Random(index)
    body = "\n".join("       " + " ".join(rnd.choice(WORDS) for _ in range(10)) for _ in range(rnd.randint(3, 12)))
    return (
        f"SEITE{index}(1)        Handbuch        SEITE{index}(1)\n\n\nBEZEICHNUNG\n       seite{index} - "
        f"Seite Nummer {index}\n\nBESCHREIBUNG\n{body}\n\nÜBERSETZUNG\n       Jemand.\n\n"
        f"test 1.0        Mai 2024        SEITE{index}(1)\n"
    )


def write_fake_asset(languages: dict[str, int]) -> Path:
    """``assets_dir()/manpages-l10n`` as a pull leaves it, with ``count`` pages for each language."""
    dest = assets_dir() / MANPAGES
    dest.mkdir(parents=True)
    info = {}
    for language, count in languages.items():
        with (dest / f"{language}.jsonl").open("w", encoding="utf-8") as fh:
            for i in range(count):
                fh.write(json.dumps({"page": f"seite{i}", "section": "1", "text": _rendered_page(i)}) + "\n")
        version = next(m.package.version for m in MANPAGE_SETS if m.language == language)
        info[language] = {"version": version, "pages": count}
    manifest = {
        "asset": MANPAGES,
        "packages": {p.name: p.version for p in ASSETS.get(MANPAGES).packages},
        "languages": info,
    }
    (dest / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    return dest


def test_every_language_is_a_registered_source():
    from calibench.data.sources import list_sources

    names = {f"man-{code}" for code in ("en", "de", "fr", "es", "pl", "ru", "ja", "zh")}
    assert names <= set(list_sources())
    assert set(MANPAGE_LANGUAGES) == {name.removeprefix("man-") for name in names}


def test_train_and_heldout_are_disjoint_and_deterministic():
    write_fake_asset({"de": 120})
    source = get_source("man-de")
    train = source.documents("train").texts
    heldout = source.documents("heldout").texts
    assert train and heldout and not set(train) & set(heldout)
    assert all(is_heldout(t) for t in heldout) and not any(is_heldout(t) for t in train)
    assert len(train) + len(heldout) == 120
    assert all("ÜBERSETZUNG" not in t and "SEITE" not in t and t.startswith("BEZEICHNUNG\n") for t in train)
    again = get_source("man-de")
    assert again.documents("train").texts == train
    assert again.documents("heldout").fingerprint() == source.documents("heldout").fingerprint()


def test_the_record_names_the_language():
    write_fake_asset({"de": 30})
    source = get_source("man-de")
    record = source.record("train", source.documents("train").fingerprint())
    assert record.name == "man-de" and record.kind == "manpages" and record.split == "train"
    assert record.spec["language"] == "de"
    assert record.spec["package"] == "manpages-de" and record.spec["package_version"] == "4.18.1-1"
    assert source.heldout_split == "heldout" and source.default_split == "train"


def test_a_calibration_set_from_the_fake_asset(tiny_tokenizer):
    from calibench.data.draw import build_calibration_sets

    write_fake_asset({"de": 200})
    sets = build_calibration_sets("man-de", tiny_tokenizer, n=4, seq_len=32, seed=0, sets=2)
    assert len(sets) == 2 and sets[0].input_ids.shape == (4, 32)
    assert sets[0].manifest.source.spec["language"] == "de"
    assert sets[0].manifest.source.split == "train"
    again = build_calibration_sets("man-de", tiny_tokenizer, n=4, seq_len=32, seed=0, sets=2)
    assert [s.sha256 for s in again] == [s.sha256 for s in sets]


def test_ppl_task_reads_the_heldout_split():
    from calibench.evaluation.heldout import load_heldout_texts
    from calibench.evaluation.tasks import parse_tasks

    write_fake_asset({"de": 120})
    (request,) = parse_tasks("ppl:man-de")
    assert request.heldout is not None and request.heldout.offline and request.heldout.split == "heldout"
    texts, fingerprint = load_heldout_texts(request.heldout)
    heldout = get_source("man-de").documents("heldout")
    assert texts == heldout.texts and fingerprint == heldout.fingerprint()


def test_root_override_reads_another_folder(tmp_path):
    dest = write_fake_asset({"fr": 10})
    moved = tmp_path / "elsewhere"
    shutil.move(dest, moved)
    source = ManPageSource("fr", root=moved)
    assert len(source.documents("train")) + len(source.documents("heldout")) == 10


def _one_line_error(call) -> str:
    with pytest.raises(CalibenchError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_asset_says_how_to_pull():
    message = _one_line_error(lambda: get_source("man-de").documents("train"))
    assert "run `calibench assets pull manpages-l10n`" in message


def test_unknown_language_lists_the_languages():
    message = _one_line_error(lambda: ManPageSource("xx"))
    assert message.startswith("no manual pages for language 'xx' (have: en, de, fr, es, pl, ru, ja, zh)")


def test_language_missing_from_the_asset_says_what_to_do():
    write_fake_asset({"de": 5})
    message = _one_line_error(lambda: get_source("man-fr").documents("train"))
    assert "no manual pages for language 'fr'" in message and "(have: de)" in message
    assert "calibench assets pull --force manpages-l10n" in message


def test_unknown_split_is_refused():
    write_fake_asset({"de": 5})
    message = _one_line_error(lambda: get_source("man-de").documents("calibration"))
    assert "has no split 'calibration'" in message


# --- stop words per language --------------------------------------------------------

from calibench.selfcal.stopwords import (  # noqa: E402
    LANGUAGES,
    first_word_is_stopword,
    load_stopwords,
    stopword_token_ids,
    stopwords_sha256,
)


def test_english_default_is_unchanged():
    from importlib import resources

    raw = resources.files("calibench.selfcal").joinpath("stopwords_en.txt").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == "91e4027ba78cee7a0972a8af7a7ea92fd2276745880994bd4130c3d295b86d93"
    words, origin = load_stopwords()
    assert (words, origin) == load_stopwords(language="en")
    assert origin == "calibench:stopwords_en.txt" and len(words) == 159
    assert stopwords_sha256(words) == "46e9b506442b2567d69a386faeab5725a27604c5f7e67bf969df96d31336cfd3"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_bundled_list_loads(language):
    words, origin = load_stopwords(language=language)
    assert origin == f"calibench:stopwords_{language}.txt"
    assert 50 <= len(words) <= 170 and len(set(words)) == len(words)
    assert all(w == w.lower() and w.strip() == w and " " not in w for w in words)


def test_unknown_stopword_language_is_one_line():
    message = _one_line_error(lambda: load_stopwords(language="xx"))
    assert message.startswith("no bundled stop-word list for language 'xx' (have: en, de, fr, es, pl, ru, ja, zh)")


def test_a_file_wins_over_the_language(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("foo\nbar\n", encoding="utf-8")
    assert load_stopwords(path, language="de") == (["foo", "bar"], "mine.txt")


@pytest.mark.parametrize(
    ("language", "yes", "no"),
    [
        ("de", ["Die Katze schläft.", "  über den Fluss", "Während es regnet"], ["Katze", "Überall", "Dieb"]),
        ("fr", ["L'homme marche.", "l’été", "Qu'il vienne", "Les chats"], ["Lorraine", "Paris", "Lesbos"]),
        ("es", ["El perro", "¿Cómo estás?", "Según él"], ["Elefante", "Comida"]),
        ("pl", ["Nie wiem.", "W domu", "Że tak"], ["Niebo", "Warszawa"]),
        ("ru", ["Это кот.", "В доме", "Ещё раз", "Еще раз"], ["Кот", "Вдова"]),
        ("ja", ["この本は面白い。", "「それは違う」", "また明日"], ["本です。", "東京は大きい"]),
        ("zh", ["我们的书", "这是一本书。", "如果下雨"], ["书很好", "北京"]),
    ],
)
def test_first_word_check_in_other_languages(language, yes, no):
    words, _ = load_stopwords(language=language)
    for text in yes:
        assert first_word_is_stopword(text, words), text
    for text in no:
        assert not first_word_is_stopword(text, words), text


def test_english_first_word_check_keeps_its_rules():
    words, _ = load_stopwords()
    assert first_word_is_stopword("  The cat", words) and not first_word_is_stopword("Theory", words)
    assert not first_word_is_stopword("it's", words)  # the whole word, apostrophe included, is looked up
    assert first_word_is_stopword("it’s", words)  # a typographic apostrophe ends the word
    assert not first_word_is_stopword("", words) and not first_word_is_stopword("...", words)


def test_stopword_tokens_of_a_german_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    text = ["Die Katze und der Hund sind nicht in dem Haus, aber die Maus ist auf dem Dach."] * 50
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>", "<unk>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(text, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    words, _ = load_stopwords(language="de")
    ids = stopword_token_ids(tokenizer, words)
    decoded = {tokenizer.decode([i]).strip().lower() for i in ids}
    assert {"die", "und", "der", "nicht", "dem", "auf"} <= decoded
    assert decoded <= set(words)
    assert "katze" not in decoded and "<s>" not in decoded


# --- integration: the real asset, if it is pulled on this machine ----------------------


@pytest.fixture
def real_manpages(manpages_asset, monkeypatch):
    """The real asset, pulled once per session like the model and data pack (see conftest.manpages_asset)."""
    from conftest import REAL_HOME

    monkeypatch.setenv("CALIBENCH_HOME", REAL_HOME)
    assert asset_path(MANPAGES) == manpages_asset
    return REAL_HOME


@pytest.mark.integration
def test_real_german_pages_build_a_set(real_manpages):
    from calibench.assets import pull as pull_asset
    from calibench.data.draw import build_calibration_sets
    from calibench.models import load_tokenizer

    pull_asset("smollm2-135m", progress=False)
    tokenizer = load_tokenizer("smollm2-135m")
    (calib,) = build_calibration_sets("man-de", tokenizer, n=4, seq_len=128, seed=0)
    assert calib.input_ids.shape == (4, 128)
    assert calib.manifest.source.spec["language"] == "de" and calib.manifest.source.split == "train"
    text = tokenizer.decode(calib.input_ids[0].tolist())
    assert len(text) > 200
    source = get_source("man-de")
    train, heldout = source.documents("train").texts, source.documents("heldout").texts
    assert len(heldout) > 0.05 * len(train) and not set(train) & set(heldout)


@pytest.mark.integration
@pytest.mark.parametrize("language", MANPAGE_LANGUAGES)
def test_real_pages_of_every_language(real_manpages, language):
    source = get_source(f"man-{language}")
    train = source.documents("train").texts
    assert len(train) > 100 and sum(len(t) for t in train) > 1_000_000
    assert not any("\b" in t or "\x1b" in t for t in train[:50])
