"""The report's words in English and German. Numbers come in as arguments, never as text."""
from __future__ import annotations


class Phrases:
    """English; `German` overrides every text. Methods format numbers the language's way."""

    lang = "en"
    decimal = "."
    thousands = ","

    # ---- number formats
    def num(self, x: float, digits: int = 4) -> str:
        return f"{x:.{digits}f}".replace(".", self.decimal)

    def pct(self, x: float) -> str:
        """Accuracies as percent with two decimals: exact for 2,000 validation images (steps of 0.05 %)."""
        return f"{100 * x:.2f}".replace(".", self.decimal) + " %"

    def int(self, n: int) -> str:
        return f"{n:,}".replace(",", self.thousands)

    def points(self, d: float) -> str:
        return f"{100 * d:+.2f}".replace(".", self.decimal) + " " + self.points_word

    def pp(self, d: float) -> str:
        """A difference of accuracies, unsigned, in percentage points."""
        return f"{100 * d:.2f}".replace(".", self.decimal) + " " + self.points_word

    def seconds(self, s: float | None) -> str:
        return "?" if s is None else f"{s:.1f}".replace(".", self.decimal) + " s"

    points_word = "points"

    def relative(self, v: str) -> str:
        """'{a} is ... b': same / higher / lower."""
        return {"same": "about the same as", "higher": "higher than", "lower": "lower than"}[v]

    def verdict(self, v: str) -> str:
        return {"same": "about the same (within the epoch-to-epoch noise)", "higher": "higher", "lower": "lower"}[v]

    # ---- headings and captions
    title = "Birds vs airplanes: NLLLoss, MSELoss and a smaller net"
    h_data = "The data"
    h_norm = "Normalization"
    h_models = "The models"
    h_curves = "Learning curves"
    h_results = "Results"
    h_task1 = "Task 1: MSELoss instead of NLLLoss"
    h_task2 = "Task 2: a smaller network against overfitting"
    h_shift = "Translation: fully connected nets are not shift invariant"
    h_eval = "Per-class scores and calibration"
    h_provenance = "Provenance"
    h_mlflow = "MLflow runs"
    h_params = "Parameters (params.yaml)"
    fig_samples = "Training images, one row per class."
    fig_accuracy = "Accuracy per epoch: training (dashed) and validation (solid)."
    fig_loss = "Loss per epoch: training (dashed) and validation (solid). NLL and MSE are on different scales."
    fig_shift = "Validation accuracy against the shift max(|dx|, |dy|) in pixels; the dotted line is chance."
    fig_shift_grid = "Validation accuracy for every shift (dx, dy)."
    fig_confusion = "Confusion matrices on the validation images (rows: actual, columns: predicted)."
    channels = ("red", "green", "blue")
    source_header = ["", "value"]
    source_url = "source URL"
    source_md5 = "md5"
    source_bytes = "bytes"
    norm_header = ["channel", "mean (here)", "mean (book)", "std (here)", "std (book)"]
    models_header = ["variant", "layers", "loss", "parameters", "epochs", "lr", "batch"]
    results_header = ["variant", "train acc.", "val. acc.", "gap", "val. loss", "best val. acc. (epoch)",
                      "epochs", "training time"]
    per_class_header = ["variant", "class", "precision", "recall", "F1", "images"]
    calibration_header = ["variant", "expected calibration error", "val. NLL"]
    prov_header = ["", "value"]
    prov_commit = "git commit"
    prov_date = "trained"
    prov_device = "device"
    prov_versions = "versions"
    mlflow_header = ["variant", "run id", "experiment"]

    # ---- sentences
    def intro(self, classes, n):
        return (f"This report compares {n} fully connected classifiers that tell {classes} apart on CIFAR-10, "
                f"following lecture 7 and chapter 7 of Deep Learning with PyTorch. Every number is read "
                f"from the pipeline's metrics files when the report is rendered.")

    def summary_task1(self, mse, nll, verdict):
        return f"Task 1: with MSELoss the final validation accuracy is {mse}, with NLLLoss {nll}: {verdict}."

    def summary_task2(self, small, nll, reduced):
        return (f"Task 2: the smaller net's overfitting gap is {small} against {nll} for the book's net: "
                + ("it overfits less." if reduced else "it does not overfit noticeably less."))

    def summary_shift(self, a0, mid, amid, k, ak, chance):
        return (f"Translation: moving the validation images by {mid} pixels takes the book's net from {a0} "
                f"to {amid} accuracy, by {k} pixels to {ak} (chance: {chance}).")

    def data(self, classes, n_train, n_val, per_class):
        return (f"Classes: {classes}. {n_train} training images ({per_class}) and {n_val} validation images "
                f"(the official test batch of these classes), 32 x 32 pixels, RGB.")

    norm_text = ("Each channel is normalized with the mean and standard deviation of the selected training "
                 "images only. The book's constants were measured on all 50,000 training images of the ten "
                 "classes, so they differ from these two-class figures.")

    def results_note(self, tol, book_train, book_val):
        return (f"The gap is training minus validation accuracy. Validation accuracy moves by about {tol} "
                f"(standard deviation over the last ten epochs of the book's net) from epoch to epoch; smaller "
                f"differences are noise. The book reports {book_train} training and {book_val} validation "
                f"accuracy for its 3072-512-2 net.")

    def task1_numbers(self, mse_val, nll_val, diff, verdict, mse_best, mse_best_epoch, nll_best, nll_best_epoch):
        return (f"After the last epoch the MSE net classifies {mse_val} of the validation images correctly, "
                f"the NLL net {nll_val} ({diff}): {verdict}. The best epochs were {mse_best} (MSE, epoch "
                f"{mse_best_epoch}) and {nll_best} (NLL, epoch {nll_best_epoch}).")

    def task1_speed(self, threshold, nll_epoch, mse_epoch, epochs, mse_gap, nll_gap, gap_verdict):
        def when(e):
            return f"epoch {e}" if e else f"not within {epochs} epochs"
        return (f"How fast each fits: training accuracy first reaches {threshold} at {when(nll_epoch)} with NLL "
                f"and at {when(mse_epoch)} with MSE. The overfitting gap is {mse_gap} with MSE against {nll_gap} "
                f"with NLL: MSE's gap is {gap_verdict} NLL's.")

    def task1_ece(self, mse, nll):
        return (f"Calibration (expected calibration error, 0 is perfect): MSE {mse}, NLL {nll}.")

    task1_reason = (
        "Why the losses behave differently: NLLLoss is -log p(correct class). For a confidently wrong "
        "output p is near 0, so the loss and its gradient grow without bound and training keeps pushing "
        "hardest on the worst mistakes. MSELoss on softmax outputs is at most 1 per image however wrong the "
        "output is, and as the softmax saturates its gradient vanishes: a confidently wrong image is "
        "punished little and barely corrected. The book's argument is exactly this: MSE's slope is too flat "
        "where the prediction is far off, so NLL (cross-entropy) is the loss for classification.")

    def task2_numbers(self, small, small_params, nll_params, ratio, small_gap, nll_gap, small_val, nll_val):
        return (f"The smaller net ({small}) has {small_params} parameters, {ratio} times fewer than the book's "
                f"{nll_params}. Its gap between training and validation accuracy is {small_gap} (book's net: "
                f"{nll_gap}); its validation accuracy is {small_val} ({nll_val}).")

    def task2_verdict(self, reduced, val, n_train):
        if reduced:
            return (f"So shrinking the network did reduce overfitting here; its validation accuracy is {val} "
                    f"the book's net's.")
        return ("So shrinking the network did not reduce overfitting noticeably here: even the small net has "
                f"enough parameters to memorise {n_train} images, and its gap is not clearly below the book's. "
                f"Its validation accuracy is {val} the book's net's.")

    def task2_best_fix(self, what, gap, val, best_epoch, epochs, base_gap, helped):
        if not helped:
            return (f"Nothing here reduced the gap by more than the noise: the smallest, {gap}, is not clearly "
                    f"below the book's net's {base_gap}.")
        if what == "early_stopping":
            return (f"What did reduce overfitting: stopping early. At its best validation epoch ({best_epoch} of "
                    f"{epochs}) the book's net has a gap of {gap} instead of {base_gap}, at {val} validation "
                    f"accuracy. That epoch is picked on the validation images themselves, so its accuracy is "
                    f"an optimistic estimate.")
        return (f"What did reduce overfitting: the variant {what.split(':', 1)[1]}, with a gap of {gap} instead of "
                f"{base_gap}, at {val} validation accuracy.")

    def shift_intro(self, k):
        return (f"Every validation image is moved by every (dx, dy) with |dx|, |dy| <= {k} pixels; the exposed "
                f"border gets the mean colour (0 after normalization). A fully connected net has one weight per "
                f"pixel position, so a shifted bird is, to it, a different input.")

    def shift_variant(self, name, a0, mid, amid, k, ak, chance):
        return f"{name}: {a0} unshifted, {amid} at {mid} pixels, {ak} at {k} pixels (chance {chance})."

    shift_reason = ("Nothing in the architecture shares what it learned at one position with the others: "
                    "it would have to see every object at every position. Convolutions share weights across "
                    "positions, which is where chapter 8 of the book continues.")

    mlflow_text = ("Each variant's training, evaluation and shift test are one MLflow run (params, per-epoch "
                   "metrics with step = epoch, the model). Browse them with "
                   "`mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db`.")


    # ---- capacity sweep and translation comparison (issue: answer the homework properly)
    h_sweep = "Capacity sweep: width, depth and regularizers, several seeds each"
    fig_sweep = ("Capacity sweep: validation accuracy (left, with the training accuracy of the same nets dashed) "
                 "and the gap (right) against the number of parameters; mean ± std over seeds.")
    sweep_header = ["configuration", "model", "parameters", "train acc.", "val. acc.", "gap"]

    def mean_std(self, mean, std):
        return f"{self.pct(mean)} ± {self.pp(std).split(' ')[0]}"

    def sweep_intro(self, seeds, epochs, n):
        return (f"One variant and one seed cannot tell 80 % from 82 %: validation accuracy moves by about a point "
                f"from epoch to epoch. The sweep trains {n} configurations with the book's recipe, {seeds} seeds "
                f"each, for {epochs} epochs; the table gives mean ± standard deviation over the seeds. Two "
                f"configurations are called different when their means are further apart than the larger of "
                f"their standard deviations.")

    def sweep_trend(self, first, last, gap_first, gap_last, grows, min_gap, min_gap_value, best_val, best_val_value):
        trend = ("grows with the width" if grows else
                 "does not grow clearly with the width")
        return (f"The gap {trend}: {gap_first} at {first}, {gap_last} at {last}. The smallest gap is {min_gap}'s "
                f"({min_gap_value}); the best validation accuracy is {best_val}'s ({best_val_value}).")

    def sweep_regularizer(self, name, base, gap, base_gap, val, base_val, gap_change, val_change, stopped, epochs):
        g = {"same": "no clear change of the gap", "lower": "a clearly smaller gap",
             "higher": "a clearly larger gap"}[gap_change]
        v = {"same": "about the same validation accuracy", "higher": "a clearly higher validation accuracy",
             "lower": "a clearly lower validation accuracy"}[val_change]
        extra = f" (training stopped after {stopped:.0f} of {epochs} epochs on average)" if stopped < epochs else ""
        return (f"{name}: gap {gap} against {base_gap} for {base} alone, validation accuracy {val} against "
                f"{base_val}: {g}, {v}{extra}.")

    def sweep_rule(self, pick, model, params, pick_val, best, best_val, threshold, small, small_hidden, agrees,
                   hidden):
        verdict = (f"The `{small}` variant uses hidden layers {small_hidden}, the rule's choice." if agrees else
                   f"The `{small}` variant uses hidden layers {small_hidden}; the rule would pick {hidden} "
                   f"(`dvc exp run -S 'train.variants.{small}.hidden={hidden}'`).")
        return (f"Which small net? Rule: the net with the fewest parameters whose mean validation accuracy is "
                f"within one standard deviation of the best ({best}, {best_val}), i.e. at least {threshold}. "
                f"It picks {pick} ({model}, {params} parameters, {pick_val}). {verdict}")

    seeds_header = ["variant", "seeds", "train acc.", "val. acc.", "gap"]
    seeds_text = ("Variants trained with several seeds (the table above shows the first seed's model, the one "
                  "evaluated and shift-tested); mean ± standard deviation over the seeds. The task comparisons "
                  "below use these means and call a difference real only when it exceeds the larger std.")

    def translation_header(self, mid, k):
        return ["variant", "model", "unshifted", f"shift {mid}", f"shift {k}", f"change 0 → {k}"]

    def translation_verdict(self, most, drop, base, base_drop, k, best):
        lead = (f" The highest accuracy at every shift, from 0 to {k} pixels, has {best}." if best else
                " No variant has the highest accuracy at every shift.")
        return (f"Smallest loss under shifts: {most}, which loses {drop} from unshifted images to shifts of {k} "
                f"pixels, against {base_drop} for the plain MLP ({base}).{lead} Training on shifted images "
                f"shows the MLP each object at more positions, but it still learns every position separately "
                f"(one weight per pixel); the convolutions share their weights across positions and the "
                f"max-pools forget small offsets, so part of the robustness is in the architecture.")

class German(Phrases):
    lang = "de"
    decimal = ","
    thousands = "."
    points_word = "Prozentpunkte"

    def verdict(self, v: str) -> str:
        return {"same": "etwa gleich (im Rahmen der Schwankung von Epoche zu Epoche)", "higher": "höher",
                "lower": "niedriger"}[v]

    title = "Vögel oder Flugzeuge: NLLLoss, MSELoss und ein kleineres Netz"
    h_data = "Die Daten"
    h_norm = "Normalisierung"
    h_models = "Die Modelle"
    h_curves = "Lernkurven"
    h_results = "Ergebnisse"
    h_task1 = "Aufgabe 1: MSELoss statt NLLLoss"
    h_task2 = "Aufgabe 2: ein kleineres Netz gegen Overfitting"
    h_shift = "Verschiebung: vollständig verbundene Netze sind nicht translationsinvariant"
    h_eval = "Werte pro Klasse und Kalibrierung"
    h_provenance = "Herkunft"
    h_mlflow = "MLflow-Runs"
    h_params = "Parameter (params.yaml)"
    fig_samples = "Trainingsbilder, eine Zeile pro Klasse."
    fig_accuracy = "Genauigkeit pro Epoche: Training (gestrichelt) und Validierung (durchgezogen)."
    fig_loss = ("Loss pro Epoche: Training (gestrichelt) und Validierung (durchgezogen). NLL und MSE haben "
                "verschiedene Skalen.")
    fig_shift = "Validierungsgenauigkeit über der Verschiebung max(|dx|, |dy|) in Pixeln; gepunktet: Zufall."
    fig_shift_grid = "Validierungsgenauigkeit für jede Verschiebung (dx, dy)."
    fig_confusion = "Konfusionsmatrizen auf den Validierungsbildern (Zeilen: tatsächlich, Spalten: vorhergesagt)."
    channels = ("rot", "grün", "blau")
    source_header = ["", "Wert"]
    source_url = "Quell-URL"
    source_md5 = "md5"
    source_bytes = "Bytes"
    norm_header = ["Kanal", "Mittelwert (hier)", "Mittelwert (Buch)", "Std. (hier)", "Std. (Buch)"]
    models_header = ["Variante", "Schichten", "Loss", "Parameter", "Epochen", "Lernrate", "Batch"]
    results_header = ["Variante", "Train.-Gen.", "Val.-Gen.", "Lücke", "Val.-Loss", "beste Val.-Gen. (Epoche)",
                      "Epochen", "Trainingszeit"]
    per_class_header = ["Variante", "Klasse", "Präzision", "Recall", "F1", "Bilder"]
    calibration_header = ["Variante", "erwarteter Kalibrierungsfehler", "Val.-NLL"]
    prov_header = ["", "Wert"]
    prov_commit = "Git-Commit"
    prov_date = "trainiert"
    prov_device = "Gerät"
    prov_versions = "Versionen"
    mlflow_header = ["Variante", "Run-ID", "Experiment"]

    def intro(self, classes, n):
        return (f"Dieser Bericht vergleicht {n} vollständig verbundene Klassifikatoren, die {classes} auf "
                f"CIFAR-10 unterscheiden, nach Vorlesung 7 und Kapitel 7 von Deep Learning with PyTorch. Jede "
                f"Zahl wird beim Erstellen des Berichts aus den Metrik-Dateien der Pipeline gelesen.")

    def summary_task1(self, mse, nll, verdict):
        return (f"Aufgabe 1: mit MSELoss beträgt die Validierungsgenauigkeit am Ende {mse}, mit NLLLoss {nll}: "
                f"{verdict}.")

    def summary_task2(self, small, nll, reduced):
        return (f"Aufgabe 2: die Overfitting-Lücke des kleineren Netzes beträgt {small}, die des Netzes aus dem "
                f"Buch {nll}: " + ("es überanpasst weniger." if reduced else "es überanpasst nicht merklich weniger."))

    def summary_shift(self, a0, mid, amid, k, ak, chance):
        return (f"Verschiebung: um {mid} Pixel verschobene Validierungsbilder senken die Genauigkeit des Netzes "
                f"aus dem Buch von {a0} auf {amid}, um {k} Pixel auf {ak} (Zufall: {chance}).")

    def data(self, classes, n_train, n_val, per_class):
        return (f"Klassen: {classes}. {n_train} Trainingsbilder ({per_class}) und {n_val} Validierungsbilder "
                f"(der offizielle Testbatch dieser Klassen), 32 x 32 Pixel, RGB.")

    norm_text = ("Jeder Kanal wird mit Mittelwert und Standardabweichung nur der ausgewählten Trainingsbilder "
                 "normalisiert. Die Konstanten des Buchs stammen von allen 50.000 Trainingsbildern der zehn "
                 "Klassen und weichen daher von diesen Werten für zwei Klassen ab.")

    def results_note(self, tol, book_train, book_val):
        return (f"Die Lücke ist Trainings- minus Validierungsgenauigkeit. Die Validierungsgenauigkeit schwankt "
                f"von Epoche zu Epoche um etwa {tol} (Standardabweichung über die letzten zehn Epochen des "
                f"Netzes aus dem Buch); kleinere Unterschiede sind Rauschen. Das Buch nennt {book_train} "
                f"Trainings- und {book_val} Validierungsgenauigkeit für sein 3072-512-2-Netz.")

    def task1_numbers(self, mse_val, nll_val, diff, verdict, mse_best, mse_best_epoch, nll_best, nll_best_epoch):
        return (f"Nach der letzten Epoche klassifiziert das MSE-Netz {mse_val} der Validierungsbilder richtig, "
                f"das NLL-Netz {nll_val} ({diff}): {verdict}. Die besten Epochen erreichten {mse_best} (MSE, "
                f"Epoche {mse_best_epoch}) und {nll_best} (NLL, Epoche {nll_best_epoch}).")

    def task1_speed(self, threshold, nll_epoch, mse_epoch, epochs, mse_gap, nll_gap, gap_verdict):
        def when(e):
            return f"in Epoche {e}" if e else f"nicht innerhalb von {epochs} Epochen"
        return (f"Wie schnell die Netze lernen: die Trainingsgenauigkeit erreicht {threshold} mit NLL "
                f"{when(nll_epoch)} und mit MSE {when(mse_epoch)}. Die Overfitting-Lücke beträgt mit MSE "
                f"{mse_gap}, mit NLL {nll_gap}: die Lücke von MSE ist {gap_verdict} die von NLL.")

    def task1_ece(self, mse, nll):
        return f"Kalibrierung (erwarteter Kalibrierungsfehler, 0 ist perfekt): MSE {mse}, NLL {nll}."

    task1_reason = (
        "Warum sich die Losses unterscheiden: NLLLoss ist -log p(richtige Klasse). Bei einer selbstsicher "
        "falschen Ausgabe ist p nahe 0, Loss und Gradient wachsen unbeschränkt, und das Training korrigiert "
        "die schlimmsten Fehler am stärksten. MSELoss auf Softmax-Ausgaben ist pro Bild höchstens 1, egal wie "
        "falsch die Ausgabe ist, und wenn die Softmax sättigt, verschwindet sein Gradient: ein selbstsicher "
        "falsches Bild wird kaum bestraft und kaum korrigiert. Genau so argumentiert das Buch: die Steigung "
        "von MSE ist dort zu flach, wo die Vorhersage weit daneben liegt, daher ist NLL (Kreuzentropie) der "
        "Loss für Klassifikation.")

    def task2_numbers(self, small, small_params, nll_params, ratio, small_gap, nll_gap, small_val, nll_val):
        return (f"Das kleinere Netz ({small}) hat {small_params} Parameter, {ratio}-mal weniger als die "
                f"{nll_params} des Netzes aus dem Buch. Seine Lücke zwischen Trainings- und "
                f"Validierungsgenauigkeit beträgt {small_gap} (Buch-Netz: {nll_gap}); seine "
                f"Validierungsgenauigkeit {small_val} ({nll_val}).")

    def relative(self, v: str) -> str:
        return {"same": "etwa so hoch wie", "higher": "höher als", "lower": "niedriger als"}[v]

    def task2_verdict(self, reduced, val, n_train):
        if reduced:
            return (f"Das Verkleinern hat das Overfitting hier also verringert; seine Validierungsgenauigkeit ist "
                    f"{val} die des Buch-Netzes.")
        return ("Das Verkleinern hat das Overfitting hier also nicht merklich verringert: auch das kleine Netz hat "
                f"genug Parameter, um {n_train} Bilder auswendig zu lernen, und seine Lücke liegt nicht deutlich "
                f"unter der des Buch-Netzes. Seine Validierungsgenauigkeit ist {val} die des Buch-Netzes.")

    def task2_best_fix(self, what, gap, val, best_epoch, epochs, base_gap, helped):
        if not helped:
            return (f"Nichts hier hat die Lücke um mehr als das Rauschen verringert: die kleinste, {gap}, liegt "
                    f"nicht deutlich unter den {base_gap} des Buch-Netzes.")
        if what == "early_stopping":
            return (f"Was das Overfitting verringert hat: früh aufhören. In seiner besten Validierungsepoche "
                    f"({best_epoch} von {epochs}) hat das Buch-Netz eine Lücke von {gap} statt {base_gap}, bei "
                    f"{val} Validierungsgenauigkeit. Diese Epoche wird auf den Validierungsbildern selbst "
                    f"ausgewählt, ihre Genauigkeit ist also eine optimistische Schätzung.")
        return (f"Was das Overfitting verringert hat: die Variante {what.split(':', 1)[1]}, mit einer Lücke von "
                f"{gap} statt {base_gap}, bei {val} Validierungsgenauigkeit.")

    def shift_intro(self, k):
        return (f"Jedes Validierungsbild wird um jedes (dx, dy) mit |dx|, |dy| <= {k} Pixel verschoben; der "
                f"freiwerdende Rand bekommt die mittlere Farbe (0 nach der Normalisierung). Ein vollständig "
                f"verbundenes Netz hat ein Gewicht pro Pixelposition, ein verschobener Vogel ist für es eine "
                f"andere Eingabe.")

    def shift_variant(self, name, a0, mid, amid, k, ak, chance):
        return f"{name}: {a0} unverschoben, {amid} bei {mid} Pixeln, {ak} bei {k} Pixeln (Zufall {chance})."

    shift_reason = ("Nichts in der Architektur überträgt, was an einer Position gelernt wurde, auf andere: das "
                    "Netz müsste jedes Objekt an jeder Position sehen. Faltungen teilen Gewichte über die "
                    "Positionen; dort setzt Kapitel 8 des Buchs fort.")

    mlflow_text = ("Training, Auswertung und Verschiebungstest jeder Variante bilden einen MLflow-Run (Parameter, "
                   "Metriken pro Epoche mit step = Epoche, das Modell). Ansehen mit "
                   "`mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db`.")


    h_sweep = "Kapazitäts-Sweep: Breite, Tiefe und Regularisierung, mehrere Seeds"
    fig_sweep = ("Kapazitäts-Sweep: Validierungsgenauigkeit (links, gestrichelt die Trainingsgenauigkeit derselben "
                 "Netze) und Lücke (rechts) gegen die Zahl der Parameter; Mittelwert ± Standardabweichung über Seeds.")
    sweep_header = ["Konfiguration", "Modell", "Parameter", "Train-Gen.", "Val.-Gen.", "Lücke"]

    def sweep_intro(self, seeds, epochs, n):
        return (f"Eine Variante mit einem Seed kann 80 % nicht von 82 % unterscheiden: die Validierungsgenauigkeit "
                f"schwankt von Epoche zu Epoche um etwa einen Punkt. Der Sweep trainiert {n} Konfigurationen mit "
                f"dem Rezept des Buchs, je {seeds} Seeds, {epochs} Epochen lang; die Tabelle zeigt Mittelwert ± "
                f"Standardabweichung über die Seeds. Zwei Konfigurationen gelten als verschieden, wenn ihre "
                f"Mittelwerte weiter auseinander liegen als die größere ihrer Standardabweichungen.")

    def sweep_trend(self, first, last, gap_first, gap_last, grows, min_gap, min_gap_value, best_val, best_val_value):
        trend = "wächst mit der Breite" if grows else "wächst nicht deutlich mit der Breite"
        return (f"Die Lücke {trend}: {gap_first} bei {first}, {gap_last} bei {last}. Die kleinste Lücke hat "
                f"{min_gap} ({min_gap_value}); die beste Validierungsgenauigkeit {best_val} ({best_val_value}).")

    def sweep_regularizer(self, name, base, gap, base_gap, val, base_val, gap_change, val_change, stopped, epochs):
        g = {"same": "keine deutliche Änderung der Lücke", "lower": "eine deutlich kleinere Lücke",
             "higher": "eine deutlich größere Lücke"}[gap_change]
        v = {"same": "etwa dieselbe Validierungsgenauigkeit", "higher": "eine deutlich höhere Validierungsgenauigkeit",
             "lower": "eine deutlich niedrigere Validierungsgenauigkeit"}[val_change]
        extra = (f" (Training im Mittel nach {stopped:.0f} von {epochs} Epochen beendet)" if stopped < epochs else "")
        return (f"{name}: Lücke {gap} gegen {base_gap} für {base} allein, Validierungsgenauigkeit {val} gegen "
                f"{base_val}: {g}, {v}{extra}.")

    def sweep_rule(self, pick, model, params, pick_val, best, best_val, threshold, small, small_hidden, agrees,
                   hidden):
        verdict = (f"Die Variante `{small}` nutzt die versteckten Schichten {small_hidden}, die Wahl der Regel." if agrees
                   else f"Die Variante `{small}` nutzt die versteckten Schichten {small_hidden}; die Regel wählt "
                        f"{hidden} (`dvc exp run -S 'train.variants.{small}.hidden={hidden}'`).")
        return (f"Welches kleine Netz? Regel: das Netz mit den wenigsten Parametern, dessen mittlere "
                f"Validierungsgenauigkeit höchstens eine Standardabweichung unter der besten liegt ({best}, "
                f"{best_val}), also mindestens {threshold}. Sie wählt {pick} ({model}, {params} Parameter, "
                f"{pick_val}). {verdict}")

    seeds_header = ["Variante", "Seeds", "Train-Gen.", "Val.-Gen.", "Lücke"]
    seeds_text = ("Varianten mit mehreren Seeds (die Tabelle oben zeigt das Modell des ersten Seeds, das ausgewertet "
                  "und verschoben getestet wird); Mittelwert ± Standardabweichung über die Seeds. Die Vergleiche "
                  "der Aufgaben unten nutzen diese Mittelwerte und nennen einen Unterschied nur dann echt, wenn er "
                  "die größere Standardabweichung übersteigt.")

    def translation_header(self, mid, k):
        return ["Variante", "Modell", "unverschoben", f"Verschiebung {mid}", f"Verschiebung {k}", f"Änderung 0 → {k}"]

    def translation_verdict(self, most, drop, base, base_drop, k, best):
        lead = (f" Die höchste Genauigkeit bei jeder Verschiebung, von 0 bis {k} Pixeln, hat {best}." if best else
                " Keine Variante hat bei jeder Verschiebung die höchste Genauigkeit.")
        return (f"Den kleinsten Verlust unter Verschiebungen hat {most}: {drop} von unverschobenen Bildern bis zu "
                f"Verschiebungen um {k} Pixel, gegen {base_drop} für das einfache MLP ({base}).{lead} Training auf "
                f"verschobenen Bildern zeigt dem MLP jedes Objekt an mehr Positionen, aber es lernt weiterhin jede "
                f"Position einzeln (ein Gewicht pro Pixel); die Faltungen teilen ihre Gewichte über die Positionen "
                f"und das Max-Pooling vergisst kleine Versätze: ein Teil der Robustheit steckt in der Architektur.")

def phrases(lang: str) -> Phrases:
    return {"en": Phrases, "de": German}[lang]()
