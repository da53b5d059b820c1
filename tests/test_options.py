"""One options schema: every door takes its options from deadtree.options, parsed and checked alike."""
import dataclasses

import pytest
from typer.testing import CliRunner

from deadtree.cli import app
from deadtree.errors import InputError, ModelError
from deadtree.options import MANY, SEGMENT, SERVICE, SegmentOptions, door_fields, from_cli

runner = CliRunner()


@pytest.mark.parametrize("command, door", [("segment", SEGMENT), ("segment-many", MANY)])
def test_every_option_of_a_door_is_in_its_command_help(command, door):
    shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
    for f in door_fields(door):
        assert f"--{f.name.replace('_', '-')}" in shown, f.name
        assert f.metadata["option"].help.split()[0] in shown


def test_segment_many_takes_every_result_option_segment_takes():
    segment = {f.name for f in door_fields(SEGMENT) if f.metadata["option"].result}
    many = {f.name for f in door_fields(MANY)}
    # tile geometry stays segment's own: a survey runs each model at its own tiles
    assert segment - many == {"tile_size", "overlap"}
    assert {"device", "translator"} <= many


def test_the_service_form_is_the_service_door_s_fields():
    from service.options import FORM_FIELDS
    from service.schemas import JobOptionsOut, form_properties

    fields = {f.name for f in door_fields(SERVICE)}
    assert set(FORM_FIELDS) == fields | {"format"}
    assert set(form_properties()) == fields
    assert set(JobOptionsOut.model_fields) == fields | {"format"}


def test_text_parses_as_the_cli_parses_and_settings_round_trip():
    options = SegmentOptions.from_text({"threshold": "0.4", "scales": "1.5,2", "ensemble": "a, b", "flips": "yes",
                                        "bands": "NIR,R,G,B", "precision": "INT8"}, SERVICE)
    assert (options.threshold, options.scales, options.ensemble, options.flips, options.bands, options.precision) \
        == (0.4, (1.5, 2.0), ("a", "b"), True, ("NIR", "R", "G", "B"), "int8")
    again = SegmentOptions.from_settings(options.settings())
    assert again == options
    values = {f.name: f.default for f in door_fields(SEGMENT)}
    values.update(scales="1.5", ensemble=["a,b", "c"], bands="R,G,B")
    cli = from_cli(SEGMENT, values)
    assert cli.scales == (1.5,) and cli.ensemble == ("a", "b", "c") and cli.bands == ("R", "G", "B")


@pytest.mark.parametrize("fields, words", [
    ({"threshold": "1"}, "--threshold must be between 0 and 1"),
    ({"threshold": "nan"}, "--threshold must be a finite number"),
    ({"min_area": "-2"}, "--min-area cannot be negative"),
    ({"flips": "maybe"}, "--flips must be true or false"),
    ({"scales": "3,3"}, "at most 3 different magnifications"),
    ({"scales": "1.5,2,2.5,3"}, "at most 3 different magnifications"),
    ({"scales": "5"}, "above 1 and at most 3"),
    ({"tile_size": "64"}, "unknown option 'tile_size'"),  # not the service's to set
    ({"ensemble": "a", "translator": "t"}, "cannot be combined"),
])
def test_bad_text_is_refused_in_one_line(fields, words):
    with pytest.raises(InputError) as caught:
        SegmentOptions.from_text(fields, SERVICE)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_precision_is_a_model_error_at_every_door():
    with pytest.raises(ModelError, match="unknown precision 'int4'"):
        SegmentOptions(precision="int4").check()


def test_a_new_option_is_one_field():
    """What the schema promises: a field added to SegmentOptions reaches every door it names."""
    from deadtree.options import Option

    extra = dataclasses.field(default=False, metadata={"option": Option("A test option.")})
    cls = dataclasses.make_dataclass("WithExtra", [("extra_flag", bool, extra)], bases=(SegmentOptions,))
    fields = [f for f in dataclasses.fields(cls) if MANY in f.metadata["option"].doors]
    assert "extra_flag" in {f.name for f in fields}
    assert "extra_flag" in cls(extra_flag=True).settings()
