"""The one exception type users see: its message is meant to be read by a person, not a developer."""


class DeadtreeError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""


class InputError(DeadtreeError):
    """The scene, the options or a path the user gave cannot be used."""


class ModelError(DeadtreeError):
    """A model cannot be found, loaded, or fed with this scene."""
