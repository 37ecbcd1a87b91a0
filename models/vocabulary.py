"""Controlled vocabularies shared by the schema, the simulator, the models and the reports.

One place for the names a user sees (stages, ethnic groups, assessment factors, plan
categories), so that every table and posterior is labelled the same way.  The codes follow
the DfE children in need (CIN) census; the factor names follow the columns of the DfE
table ``c3_factors_identified_at_end_of_assessment``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Stages of the child protection pathway, in order.  Each stage's parent is the stage
#: whose children are at risk of it (used for pathway transitions, stage s given parent).
STAGES: tuple[str, ...] = ("referral", "assessment", "s47", "icpc", "cpp", "lac")
STAGE_PARENT: dict[str, str | None] = {
    "referral": None,
    "assessment": "referral",
    "s47": "assessment",
    "icpc": "s47",
    "cpp": "icpc",
    # Children can become looked after without a plan; their population at risk is the
    # assessed children (an LAC episode with no assessment is a validation warning).
    "lac": "assessment",
}
STAGE_LABELS: dict[str, str] = {
    "referral": "Referral",
    "assessment": "Assessment",
    "s47": "Section 47 enquiry",
    "icpc": "Initial child protection conference",
    "cpp": "Child protection plan",
    "lac": "Looked after",
}
STAGE_SHORT: dict[str, str] = {
    "referral": "Referral", "assessment": "Assessment", "s47": "S47", "icpc": "ICPC",
    "cpp": "CPP", "lac": "LAC",
}

GENDERS: tuple[str, ...] = ("male", "female", "other", "unknown")
#: CIN census gender codes.
GENDER_CODES: dict[str, str] = {"1": "male", "2": "female", "0": "unknown", "9": "other"}

#: Age groups used by DfE publications (age at referral, completed years).
AGE_GROUPS: tuple[str, ...] = ("under_1", "1_4", "5_9", "10_15", "16_plus")
AGE_GROUP_BOUNDS: tuple[tuple[int, int], ...] = ((0, 0), (1, 4), (5, 9), (10, 15), (16, 17))
AGE_BOUNDS: dict[str, tuple[int, int]] = dict(zip(AGE_GROUPS, AGE_GROUP_BOUNDS))


def age_group(age: int) -> str:
    """Map a completed age in years (0-17) to its DfE age group."""
    for name, (lo, hi) in zip(AGE_GROUPS, AGE_GROUP_BOUNDS):
        if lo <= age <= hi:
            return name
    raise ValueError(f"age {age} is outside 0-17")


#: Ethnic groups: DfE major groups, with White British kept apart from other White
#: children because the research found a steeper gradient for White British children.
ETHNICITIES: tuple[str, ...] = (
    "white_british", "white_other", "mixed", "asian", "black", "other", "unknown",
)
#: CIN census ethnicity codes (as in the school and CIN censuses) -> group.
ETHNICITY_CODES: dict[str, str] = {
    "WBRI": "white_british",
    "WIRI": "white_other", "WIRT": "white_other", "WOTH": "white_other", "WROM": "white_other",
    "MWBC": "mixed", "MWBA": "mixed", "MWAS": "mixed", "MOTH": "mixed",
    "AIND": "asian", "APKN": "asian", "ABAN": "asian", "AOTH": "asian", "CHNE": "asian",
    "BCRB": "black", "BAFR": "black", "BOTH": "black",
    "OOTH": "other",
    "REFU": "unknown", "NOBT": "unknown",
}

#: Category of abuse of a child protection plan.
CPP_CATEGORIES: tuple[str, ...] = ("neglect", "physical", "sexual", "emotional", "multiple")


@dataclass(frozen=True)
class Factor:
    """An assessment factor: canonical name, CIN census code and DfE c3 column name."""

    name: str
    code: str
    c3_column: str
    label: str


def _f(name: str, code: str, c3: str, label: str) -> Factor:
    return Factor(name, code, c3, label)


#: The factors identified at the end of assessment, in the order of the DfE c3 table.
FACTORS: tuple[Factor, ...] = (
    _f("alcohol_child", "1A", "Alcohol_Misuse_child", "Alcohol misuse: child"),
    _f("alcohol_parent", "1B", "Alcohol_Misuse_parent", "Alcohol misuse: parent/carer"),
    _f("alcohol_person", "1C", "Alcohol_Misuse_person", "Alcohol misuse: other person"),
    _f("drugs_child", "2A", "Drug_Misuse_child", "Drug misuse: child"),
    _f("drugs_parent", "2B", "Drug_Misuse_parent", "Drug misuse: parent/carer"),
    _f("drugs_person", "2C", "Drug_Misuse_person", "Drug misuse: other person"),
    _f("domestic_abuse_child", "3A", "Domestic_Abuse_child", "Domestic abuse: child"),
    _f("domestic_abuse_parent", "3B", "Domestic_Abuse_parent", "Domestic abuse: parent/carer"),
    _f("domestic_abuse_person", "3C", "Domestic_Abuse_person", "Domestic abuse: other person"),
    _f("mental_health_child", "4A", "Mental_Health_child", "Mental health: child"),
    _f("mental_health_parent", "4B", "Mental_Health_parent", "Mental health: parent/carer"),
    _f("mental_health_person", "4C", "Mental_Health_person", "Mental health: other person"),
    _f("learning_disability_child", "5A", "Learning_Disability_child", "Learning disability: child"),
    _f("learning_disability_parent", "5B", "Learning_Disability_parent",
       "Learning disability: parent/carer"),
    _f("learning_disability_person", "5C", "Learning_Disability_person",
       "Learning disability: other person"),
    _f("physical_disability_child", "6A", "Physical_Disability_child",
       "Physical disability or illness: child"),
    _f("physical_disability_parent", "6B", "Physical_Disability_parent",
       "Physical disability or illness: parent/carer"),
    _f("physical_disability_person", "6C", "Physical_Disability_person",
       "Physical disability or illness: other person"),
    _f("young_carer", "7A", "Young_Carer", "Young carer"),
    _f("privately_fostered", "8B", "Privately_fostered", "Privately fostered"),
    _f("uasc", "9A", "Unaccompanied_asylum_seeker", "Unaccompanied asylum-seeking child"),
    _f("going_missing", "10A", "Going_missing", "Going missing"),
    _f("cse", "11A", "Child_sexual_exploitation", "Child sexual exploitation"),
    _f("trafficking", "12A", "Trafficking", "Trafficking"),
    _f("gangs", "13A", "Gangs", "Gangs"),
    _f("socially_unacceptable_behaviour", "14A", "Socially_unacceptable_behaviour",
       "Socially unacceptable behaviour"),
    _f("self_harm", "15A", "Self_harm", "Self-harm"),
    _f("neglect", "16A", "Neglect", "Neglect"),
    _f("emotional_abuse", "17A", "Emotional_Abuse", "Emotional abuse"),
    _f("physical_abuse_unknown", "18A", "Physical_Abuse_unknown", "Physical abuse: unknown"),
    _f("physical_abuse_child_on_child", "18B", "Physical_Abuse_child_on_child",
       "Physical abuse: child on child"),
    _f("physical_abuse_adult_on_child", "18C", "Physical_Abuse_adult_on_child",
       "Physical abuse: adult on child"),
    _f("sexual_abuse_unknown", "19A", "Sexual_Abuse_unknown", "Sexual abuse: unknown"),
    _f("sexual_abuse_child_on_child", "19B", "Sexual_Abuse_child_on_child",
       "Sexual abuse: child on child"),
    _f("sexual_abuse_adult_on_child", "19C", "Sexual_Abuse_adult_on_child",
       "Sexual abuse: adult on child"),
    _f("fgm", "20", "Female_Genital_Mutilation", "Female genital mutilation"),
    _f("faith_linked_abuse", "22A", "Faith_linked_abuse", "Abuse linked to faith or belief"),
    _f("cce", "23A", "Child_criminal_exploitation", "Child criminal exploitation"),
    _f("other", "24A", "Other", "Other"),
)
FACTOR_NAMES: tuple[str, ...] = tuple(f.name for f in FACTORS)
FACTOR_BY_CODE: dict[str, Factor] = {f.code: f for f in FACTORS}
FACTOR_BY_C3: dict[str, Factor] = {f.c3_column: f for f in FACTORS}
FACTOR_BY_NAME: dict[str, Factor] = {f.name: f for f in FACTORS}

#: The seven demand classes of the study (Hood et al. 2020), in a fixed order.
DEMAND_CLASSES: tuple[str, ...] = (
    "neglect", "domestic_violence", "physical_abuse", "complex_needs_1",
    "complex_needs_2", "out_of_control", "disability_mental_health",
)
DEMAND_CLASS_LABELS: dict[str, str] = {
    "neglect": "Neglect",
    "domestic_violence": "Domestic Violence",
    "physical_abuse": "Physical Abuse",
    "complex_needs_1": "Complex Needs I",
    "complex_needs_2": "Complex Needs II",
    "out_of_control": "Out-of-control / highly vulnerable",
    "disability_mental_health": "Disability / Mental Health",
}
