"""The words of every prompt, by key and language.

Theory of operation
-------------------
A prompt is named by a *key* (``enter_pin``, ``muted``, ...). Scenarios and the in-call
controls only ever name keys; this file holds what each key says in each language, and
:mod:`dialbridge.prompts.catalogue` turns that into audio (or finds an admin's recording).

Texts may name placeholders that depend on configuration rather than on the language:

* ``{mute_keys}``, ``{hand_keys}``, ``{help_keys}`` -- the in-call key sequences, spoken
  (``*6`` → "star 6" / "Stern 6"), so a custom key map gets a truthful help prompt;
* ``{menu_digit}`` -- the digit that picks this language in ``language_menu``.

Wording follows the reference scenario where it had one (reference-scenarios.md §2.3-2.6,
§4.3, §4.5), without its TTS spelling tricks; English uses "pound" like the reference.
"""

from __future__ import annotations

__all__ = ["KEYS", "SPOKEN_KEYS", "TEXTS", "VOICES"]

#: espeak-ng voice per language (stack-notes.md §5).
VOICES: dict[str, str] = {"en": "en-us", "de": "de"}

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        # -- dial-in IVR --
        "language_menu": "For English, press {menu_digit}.",
        "enter_pin": "Please enter the meeting PIN, followed by the pound key.",
        "unknown_pin": "That meeting PIN is unknown.",
        "enter_password": (
            "If the meeting has a password, please enter it now, followed by pound. "
            "Without a password, just press pound."
        ),
        "wrong_password": "That password was not accepted.",
        "connecting": "Connecting you to the meeting. Please wait.",
        "could_not_join": (
            "We could not join you to the meeting. Please check the PIN and the password."
        ),
        "too_many_attempts": "Too many wrong attempts. Please try again later.",
        "try_later": "Too many wrong attempts. Please try again later.",
        "no_input": "We did not receive any input.",
        "goodbye": "Goodbye.",
        # -- dial-out --
        "calling": "Calling.",
        # -- in-call controls --
        "muted": "You are muted. Press {mute_keys} to unmute.",
        "unmuted": "You are unmuted. Press {mute_keys} to mute.",
        "mute_failed": "Sorry, that did not work.",
        "cannot_unmute_hand_raised": (
            "You cannot unmute now. Your hand is raised; a moderator can allow you to speak."
        ),
        "hand_raised": "Your hand is raised.",
        "hand_lowered": "Your hand is lowered.",
        "hand_not_needed": "Raising your hand is not needed. Press {mute_keys} to unmute.",
        "help": (
            "Press {mute_keys} to mute or unmute. Press {hand_keys} to raise your hand. "
            "Press {help_keys} to hear this again."
        ),
        "moderation_on": (
            "A moderator now decides who may speak. Press {hand_keys} to raise your hand."
        ),
        "moderation_off": "Everyone may speak again.",
        "unmute_allowed": "A moderator allows you to speak. Press {mute_keys} to unmute.",
        "unmute_withdrawn": "You may no longer unmute yourself.",
        "visitor": "You joined as a viewer. Press {hand_keys} to ask to speak.",
        "promoted": "You may now take part. Press {mute_keys} to unmute.",
        "meeting_not_live": "The meeting has not started yet. Please wait.",
        "meeting_live": "The meeting has started.",
        "lobby_wait": (
            "You are in the waiting room until a moderator lets you in. "
            "If you know the meeting password, enter it now, followed by pound."
        ),
        "lobby_joined": "You have been let in to the meeting.",
        "lobby_rejected": "Sorry, you were not let in to the meeting. Goodbye.",
        # -- limits --
        "time_warning": "Your call will end in one minute.",
        "time_up": "Time limit reached. Thank you for calling. Goodbye.",
    },
    "de": {
        "language_menu": "Für Deutsch drücken Sie die {menu_digit}.",
        "enter_pin": "Bitte geben Sie die PIN der Besprechung ein, gefolgt von der Raute-Taste.",
        "unknown_pin": "Diese PIN ist unbekannt.",
        "enter_password": (
            "Wenn die Besprechung ein Passwort hat, geben Sie es jetzt ein, gefolgt von Raute. "
            "Ohne Passwort drücken Sie nur die Raute-Taste."
        ),
        "wrong_password": "Das Passwort wurde nicht angenommen.",
        "connecting": "Sie werden mit der Besprechung verbunden. Bitte warten Sie.",
        "could_not_join": (
            "Wir konnten Sie nicht mit der Besprechung verbinden. "
            "Bitte prüfen Sie PIN und Passwort."
        ),
        "too_many_attempts": "Zu viele falsche Versuche. Bitte versuchen Sie es später erneut.",
        "try_later": "Zu viele falsche Versuche. Bitte versuchen Sie es später erneut.",
        "no_input": "Wir haben keine Eingabe erhalten.",
        "goodbye": "Auf Wiederhören.",
        "calling": "Es wird angerufen.",
        "muted": "Ihr Mikrofon ist stumm. Drücken Sie {mute_keys}, um es einzuschalten.",
        "unmuted": "Ihr Mikrofon ist an. Drücken Sie {mute_keys}, um es stummzuschalten.",
        "mute_failed": "Das hat leider nicht geklappt.",
        "cannot_unmute_hand_raised": (
            "Sie können Ihr Mikrofon jetzt nicht einschalten. Ihre Hand ist gehoben; "
            "eine Moderatorin oder ein Moderator kann Ihnen das Wort geben."
        ),
        "hand_raised": "Ihre Hand ist gehoben.",
        "hand_lowered": "Ihre Hand ist gesenkt.",
        "hand_not_needed": (
            "Sie müssen sich nicht melden. Drücken Sie {mute_keys}, um Ihr Mikrofon einzuschalten."
        ),
        "help": (
            "Drücken Sie {mute_keys}, um Ihr Mikrofon ein- oder auszuschalten. "
            "Drücken Sie {hand_keys}, um sich zu melden. "
            "Drücken Sie {help_keys}, um diese Hilfe erneut zu hören."
        ),
        "moderation_on": (
            "Die Moderation entscheidet jetzt, wer sprechen darf. "
            "Drücken Sie {hand_keys}, um sich zu melden."
        ),
        "moderation_off": "Alle dürfen wieder sprechen.",
        "unmute_allowed": (
            "Sie dürfen jetzt sprechen. Drücken Sie {mute_keys}, um Ihr Mikrofon einzuschalten."
        ),
        "unmute_withdrawn": "Sie dürfen Ihr Mikrofon nicht mehr selbst einschalten.",
        "visitor": "Sie nehmen als Zuschauer teil. Drücken Sie {hand_keys}, um sich zu melden.",
        "promoted": (
            "Sie können jetzt teilnehmen. Drücken Sie {mute_keys}, um Ihr Mikrofon einzuschalten."
        ),
        "meeting_not_live": "Die Besprechung hat noch nicht begonnen. Bitte warten Sie.",
        "meeting_live": "Die Besprechung hat begonnen.",
        "lobby_wait": (
            "Sie sind im Warteraum, bis eine Moderatorin oder ein Moderator Sie hereinlässt. "
            "Wenn Sie das Passwort kennen, geben Sie es jetzt ein, gefolgt von Raute."
        ),
        "lobby_joined": "Sie wurden in die Besprechung gelassen.",
        "lobby_rejected": "Sie wurden leider nicht in die Besprechung gelassen. Auf Wiederhören.",
        "time_warning": "Ihr Anruf endet in einer Minute.",
        "time_up": "Die maximale Gesprächsdauer ist erreicht. Vielen Dank. Auf Wiederhören.",
    },
}

#: Every prompt key (English is the reference set; every language must have the same keys).
KEYS: frozenset[str] = frozenset(TEXTS["en"])

#: How each DTMF key is spoken; digits are left to the voice.
SPOKEN_KEYS: dict[str, dict[str, str]] = {
    "en": {"*": "star", "#": "pound"},
    "de": {"*": "Stern", "#": "Raute"},
}
