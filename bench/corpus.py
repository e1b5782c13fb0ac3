"""The benchmark's texts: clinical-style and general sentences written for it, composed into notes.

A note is 1 to 8 sentences drawn (with a fixed seed) from one of two pools, clinical or general,
so the mix spans one short sentence (~8 tokens) to long notes (~250 tokens with a BERT
WordPiece tokenizer). Nothing is downloaded; the same seed gives the same texts everywhere.
"""

from __future__ import annotations

import random

SEED = 20261125

CLINICAL = (
    "Patient denies chest pain.",
    "No fever or chills.",
    "She reports intermittent headaches over the past two weeks, worse in the mornings.",
    "Lungs are clear to auscultation bilaterally without wheezes, rales or rhonchi.",
    "Abdomen is soft, non-tender and non-distended with normal bowel sounds.",
    "He was started on amoxicillin 500 mg three times daily for ten days.",
    "Blood pressure 142/88, heart rate 96, temperature 37.9 C, oxygen saturation 94% on room air.",
    "Cannot rule out early pneumonia; a chest radiograph has been ordered.",
    "The patient has a history of type 2 diabetes mellitus, hypertension and hyperlipidemia, "
    "managed with metformin, lisinopril and atorvastatin.",
    "Follow up in two weeks.",
    "She was advised to return to the emergency department if symptoms worsen.",
    "Mild swelling of the left ankle without erythema or warmth.",
    "CT of the head showed no acute intracranial abnormality.",
    "Possible urinary tract infection; urine culture is pending.",
    "He quit smoking five years ago after a 20 pack-year history and drinks alcohol socially.",
    "Denies nausea, vomiting, diarrhea or blood in the stool.",
    "The wound is healing well with no signs of infection at the incision site.",
    "Hemoglobin A1c was 8.4%, up from 7.1% six months ago, suggesting poor glycemic control "
    "despite reported adherence to the current regimen.",
    "Neurological examination is non-focal; cranial nerves II through XII are intact.",
    "She lives alone and is independent in all activities of daily living.",
    "Suspect viral gastroenteritis.",
    "Echocardiogram demonstrated a left ventricular ejection fraction of 35% with global "
    "hypokinesis and moderate mitral regurgitation.",
    "Pain is rated 6 out of 10, sharp, radiating to the right shoulder, and worse after meals.",
    "Allergies: penicillin (rash) and sulfa drugs (hives).",
    "The family was updated at the bedside and agrees with the plan of care.",
    "No history of recent travel or sick contacts.",
    "Discharged home in stable condition with instructions to continue all home medications "
    "and to schedule an appointment with cardiology within one week.",
    "Rule out deep vein thrombosis with a venous duplex ultrasound of the right leg.",
    "Over the past month she has noticed progressive exertional dyspnea, now after one flight of "
    "stairs, with two-pillow orthopnea, bilateral ankle edema and a weight gain of about four "
    "kilograms despite no change in her diet or fluid intake.",
    "Medications on admission: metoprolol succinate 50 mg daily, furosemide 40 mg twice daily, "
    "apixaban 5 mg twice daily, insulin glargine 22 units at bedtime and sertraline 100 mg daily.",
    "Laboratory results showed sodium 131, potassium 5.4, creatinine 1.9 (baseline 1.2), BUN 42, "
    "white blood cell count 13.2 with 82% neutrophils, and a lactate of 2.6.",
)

GENERAL = (
    "The meeting was moved to Thursday.",
    "Thanks for the quick reply!",
    "The new library opens at nine in the morning and closes at six in the evening on weekdays.",
    "Our team shipped the release two days ahead of schedule.",
    "It rained all weekend, so the hiking trip was postponed until next month.",
    "Please send the signed contract before Friday.",
    "The restaurant was crowded, the service was slow, and the soup arrived cold, but the "
    "dessert almost made up for it.",
    "I can't log in to my account since the last update.",
    "The train from Boston was delayed by forty minutes because of a signal failure near "
    "Providence.",
    "Battery life is excellent.",
    "Customers in three regions reported that the checkout page froze after they entered a "
    "discount code, and the issue was traced to a timeout in the payment service.",
    "Is the offer still valid?",
    "The committee approved the budget with minor changes to the travel allowance.",
    "She finished the marathon in just under four hours, her best time so far.",
    "We're out of coffee again.",
    "The museum's new exhibition covers three centuries of maritime trade between Europe, "
    "Africa and the Americas.",
    "The package arrived damaged and two items were missing.",
    "Volunteers planted more than two hundred trees along the river this spring.",
    "Great product, terrible support.",
    "According to the report, housing prices in the city rose by 4.2% last year while average "
    "wages grew by only 2.9%.",
    "The software update fixes a crash when importing large spreadsheets.",
    "Let's schedule a call to go over the details.",
    "After three rounds of interviews, two take-home assignments and a long conversation with "
    "the team lead about remote work, she finally accepted the offer from the smaller company.",
)


def notes(count: int, seed: int = SEED) -> list[str]:
    """``count`` notes of 1 to 8 sentences, each from a single pool (3 in 4 clinical)."""
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        pool = CLINICAL if rng.random() < 0.75 else GENERAL
        size = rng.choice((1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 8, 8))
        result.append(" ".join(rng.sample(pool, size)))
    return result


def notes_of(sentences: int, count: int, seed: int = SEED) -> list[str]:
    """``count`` clinical notes of exactly ``sentences`` sentences (for sentence attributions)."""
    rng = random.Random(seed + sentences)
    return [" ".join(rng.sample(CLINICAL, sentences)) for _ in range(count)]


def long_texts(count: int, seed: int = SEED) -> list[str]:
    """``count`` texts of at least ~300 tokens (notes joined), to be cut to fixed lengths."""
    rng = random.Random(seed + 1)
    return [" ".join(rng.sample(CLINICAL + GENERAL, 20)) for _ in range(count)]
