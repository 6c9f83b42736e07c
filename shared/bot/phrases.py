"""The words `{{business.hours}}` and `{{business.next_open}}` are written in, per language.
A language not here is written in English."""

from __future__ import annotations

from typing import NamedTuple


class Phrases(NamedTuple):
    days: tuple[str, ...]  # Monday first
    months: tuple[str, ...]
    span: str  # consecutive days: "{first} to {last}"
    pair: str  # two days: "{first} and {last}"
    both: str  # two time ranges of one day: "{a} and {b}"
    every_day: str
    all_day: str
    today: str
    tomorrow: str
    at: str  # "{day} at {time}"
    date: str  # "{weekday} {day} {month}"
    now: str


PHRASES: dict[str, Phrases] = {
    "en": Phrases(
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
        (
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ),
        "{first} to {last}",
        "{first} and {last}",
        "{a} and {b}",
        "every day",
        "all day",
        "today",
        "tomorrow",
        "{day} at {time}",
        "{weekday} {day} {month}",
        "now",
    ),
    "it": Phrases(
        ("lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato", "domenica"),
        (
            "gennaio",
            "febbraio",
            "marzo",
            "aprile",
            "maggio",
            "giugno",
            "luglio",
            "agosto",
            "settembre",
            "ottobre",
            "novembre",
            "dicembre",
        ),
        "dal {first} al {last}",
        "{first} e {last}",
        "{a} e {b}",
        "tutti i giorni",
        "tutto il giorno",
        "oggi",
        "domani",
        "{day} alle {time}",
        "{weekday} {day} {month}",
        "adesso",
    ),
    "es": Phrases(
        ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
        (
            "enero",
            "febrero",
            "marzo",
            "abril",
            "mayo",
            "junio",
            "julio",
            "agosto",
            "septiembre",
            "octubre",
            "noviembre",
            "diciembre",
        ),
        "de {first} a {last}",
        "{first} y {last}",
        "{a} y {b}",
        "todos los días",
        "todo el día",
        "hoy",
        "mañana",
        "{day} a las {time}",
        "{weekday} {day} de {month}",
        "ahora",
    ),
    "fr": Phrases(
        ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
        (
            "janvier",
            "février",
            "mars",
            "avril",
            "mai",
            "juin",
            "juillet",
            "août",
            "septembre",
            "octobre",
            "novembre",
            "décembre",
        ),
        "du {first} au {last}",
        "{first} et {last}",
        "{a} et {b}",
        "tous les jours",
        "toute la journée",
        "aujourd'hui",
        "demain",
        "{day} à {time}",
        "{weekday} {day} {month}",
        "maintenant",
    ),
    "de": Phrases(
        ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
        (
            "Januar",
            "Februar",
            "März",
            "April",
            "Mai",
            "Juni",
            "Juli",
            "August",
            "September",
            "Oktober",
            "November",
            "Dezember",
        ),
        "{first} bis {last}",
        "{first} und {last}",
        "{a} und {b}",
        "jeden Tag",
        "den ganzen Tag",
        "heute",
        "morgen",
        "{day} um {time}",
        "{weekday}, {day}. {month}",
        "jetzt",
    ),
    "pt": Phrases(
        (
            "segunda-feira",
            "terça-feira",
            "quarta-feira",
            "quinta-feira",
            "sexta-feira",
            "sábado",
            "domingo",
        ),
        (
            "janeiro",
            "fevereiro",
            "março",
            "abril",
            "maio",
            "junho",
            "julho",
            "agosto",
            "setembro",
            "outubro",
            "novembro",
            "dezembro",
        ),
        "de {first} a {last}",
        "{first} e {last}",
        "{a} e {b}",
        "todos os dias",
        "o dia todo",
        "hoje",
        "amanhã",
        "{day} às {time}",
        "{weekday}, {day} de {month}",
        "agora",
    ),
}


def phrases(language: str) -> Phrases:
    return PHRASES.get(language) or PHRASES.get(language.split("-")[0]) or PHRASES["en"]
