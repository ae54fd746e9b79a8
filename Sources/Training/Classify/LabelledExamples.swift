/// The examples of a classification run (`--task classify`): one per line of a UTF-8 file,
/// `label<TAB>text`, split at the first tab (docs/DESIGN.md, "Classification data").
///
/// The training file is an ordinary corpus (`Corpus.load`: tokens, vocabulary, digest), so
/// workers load and verify it as they do a language model's; the examples are spans of its
/// tokens. The input vocabulary is the whole file's (the label characters, the tab and the
/// newline included: a few unused one-hot inputs, and one vocabulary for both tasks).
/// Labels are the distinct training labels sorted by code point; class index = position.
public struct LabelledExamples: Sendable {
    /// One example: class `label`, input tokens `tokens[start ..< start + count]`.
    public struct Example: Equatable, Sendable {
        public var label: Int32
        public var start: Int
        public var count: Int
    }

    /// The class names, sorted; `Example.label` indexes them.
    public let labels: [String]
    public let tokens: TokenStore
    public let examples: [Example]
    /// What parsing dropped: characters outside the vocabulary (validation and evaluation
    /// files), examples whose label the model does not know, examples left empty.
    public var skippedCharacters = 0, skippedUnknownLabels = 0, skippedEmpty = 0

    public var count: Int { examples.count }

    /// The most frequent label (the smallest index among ties); nil without examples.
    public var majorityLabel: Int? {
        guard !examples.isEmpty else { return nil }
        var counts = [Int](repeating: 0, count: labels.count)
        for e in examples { counts[Int(e.label)] += 1 }
        return counts.indices.max { counts[$0] < counts[$1] || (counts[$0] == counts[$1] && $0 > $1) }
    }

    /// Copies the first `maxLength` tokens of example `i` to `destination`; returns how many.
    public func copyInput(_ i: Int, maxLength: Int, into destination: UnsafeMutablePointer<Int32>) -> Int {
        let e = examples[i], n = min(e.count, maxLength)
        tokens.copy(from: e.start, count: n, into: destination)
        return n
    }

    /// How many examples are longer than `maxLength` (the run says it truncates them).
    public func truncatedCount(maxLength: Int) -> Int { examples.reduce(0) { $0 + ($1.count > maxLength ? 1 : 0) } }

    /// The examples of a training corpus: every line, in file order, split as `TextLines`
    /// splits every line-based input (so `eval` and `--val-data` see the same lines: a CR LF
    /// file's CR is part of the line end, not of the text). Throws `CorpusError.badExample`
    /// naming the first line without a tab, label or text, with a lone CR, longer than
    /// `TextLines.maximumLineBytes`, or whose label holds a control character.
    /// (`maximumLineBytes` is lowered only by fuzzing, to reach the limit with small inputs.)
    public static func parse(_ corpus: Corpus, maximumLineBytes: Int = TextLines.maximumLineBytes) throws -> (labels: [String], examples: [Example]) {
        let v = corpus.vocabulary
        let newline = v.id(of: "\n") ?? -1   // a one-line file has no newline
        let carriageReturn = v.id(of: "\r") ?? -1
        guard let tab = v.id(of: "\t") else {
            throw CorpusError.badExample(path: corpus.name, line: 1, reason: "no tab: each line must be label<TAB>text")
        }
        let utf8Width = v.scalars.map { UTF8.width($0) }
        let tokens = corpus.tokens
        var raw: [(label: String, start: Int, count: Int)] = []
        var lineStart = 0, line = 1
        while lineStart < tokens.count {
            var end = lineStart, bytes = 0
            while end < tokens.count && tokens[end] != newline {
                bytes += utf8Width[Int(tokens[end])]
                end += 1
            }
            let (textEnd, lone) = TextLines.textEnd(start: lineStart, end: end) { tokens[$0] == carriageReturn }
            guard bytes - (end - textEnd) <= maximumLineBytes else {
                throw CorpusError.badExample(path: corpus.name, line: line, reason: TextLines.tooLong(limit: maximumLineBytes))
            }
            if lone != nil { throw CorpusError.badExample(path: corpus.name, line: line, reason: TextLines.loneCarriageReturn) }
            guard let split = (lineStart..<textEnd).first(where: { tokens[$0] == tab }) else {
                throw CorpusError.badExample(path: corpus.name, line: line, reason: "no tab: each line must be label<TAB>text")
            }
            guard split > lineStart else { throw CorpusError.badExample(path: corpus.name, line: line, reason: "empty label") }
            guard textEnd > split + 1 else { throw CorpusError.badExample(path: corpus.name, line: line, reason: "empty text") }
            let label = v.decode((lineStart..<split).map { tokens[$0] })
            if let reason = labelProblem(label) { throw CorpusError.badExample(path: corpus.name, line: line, reason: reason) }
            raw.append((label, split + 1, textEnd - split - 1))
            lineStart = end + 1
            line += 1
        }
        let labels = Array(Set(raw.map(\.label))).sorted { Array($0.unicodeScalars.map(\.value)).lexicographicallyPrecedes($1.unicodeScalars.map(\.value)) }
        let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, Int32($0)) })
        return (labels, raw.map { Example(label: index[$0.label]!, start: $0.start, count: $0.count) })
    }

    /// Why `label` cannot name a class, or nil: a control character (TAB, LF, CR, ESC, NUL, …)
    /// would break `predict`'s `label<TAB>probability` lines or print as a terminal escape.
    /// Training files and checkpoint metadata are both checked, so no checkpoint holds one.
    public static func labelProblem(_ label: String) -> String? {
        if label.isEmpty { return "empty label" }
        guard let bad = label.unicodeScalars.first(where: { $0.properties.generalCategory == .control }) else { return nil }
        let hex = String(bad.value, radix: 16, uppercase: true)
        return "label \(Vocabulary.quoted(bad)) is a control character (U+\(String(repeating: "0", count: max(0, 4 - hex.count)) + hex)): class names are printed in predict's label<TAB>probability lines"
    }

    /// The training and validation examples of `corpus`: the validation set is the last
    /// floor(count·f) lines, in file order; the rest train. Labels are those of the training
    /// lines; validation lines of another label are skipped (counted).
    public static func split(_ corpus: Corpus, validationFraction f: Double) throws -> (train: LabelledExamples, validation: LabelledExamples) {
        let (labels, all) = try parse(corpus)
        let validationCount = Int((Double(all.count) * f).rounded(.down))
        let trainPart = all[..<(all.count - validationCount)], validationPart = all[(all.count - validationCount)...]
        guard !trainPart.isEmpty else {
            throw CorpusError.badExample(path: corpus.name, line: all.count, reason: "no training examples left after the validation split")
        }
        let trainLabels = Set(trainPart.map(\.label))
        let kept = labels.enumerated().filter { trainLabels.contains(Int32($0.offset)) }
        let remap = Dictionary(uniqueKeysWithValues: kept.enumerated().map { (Int32($1.offset), Int32($0)) })
        let names = kept.map(\.element)
        func relabel(_ part: ArraySlice<Example>) -> [Example] {
            part.compactMap { e in remap[e.label].map { Example(label: $0, start: e.start, count: e.count) } }
        }
        let validation = relabel(validationPart)
        var v = LabelledExamples(labels: names, tokens: corpus.tokens, examples: validation)
        v.skippedUnknownLabels = validationPart.count - validation.count
        return (LabelledExamples(labels: names, tokens: corpus.tokens, examples: relabel(trainPart)), v)
    }

    /// Examples of another labelled file (`--val-data`, `recur eval`) read with a trained
    /// model's vocabulary and labels: characters outside the vocabulary are dropped and
    /// examples of an unknown label skipped (both counted); a line without a tab, or one that
    /// breaks the line contract (`TextLines`), is an error.
    public static func read(lines: LineReader, vocabulary: Vocabulary, labels: [String]) throws -> LabelledExamples {
        let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, Int32($0)) })
        var ids: [Int32] = [], examples: [Example] = []
        var skippedCharacters = 0, unknown = 0, empty = 0
        while let line = try lines.next() {
            guard let tab = line.firstIndex(of: "\t") else {
                throw CorpusError.badExample(path: lines.name, line: lines.lineNumber, reason: "no tab: each line must be label<TAB>text")
            }
            let label = String(line[..<tab])
            guard !label.isEmpty else { throw CorpusError.badExample(path: lines.name, line: lines.lineNumber, reason: "empty label") }
            guard let classIndex = index[label] else { unknown += 1; continue }
            let start = ids.count
            for scalar in line[line.index(after: tab)...].unicodeScalars {
                if let id = vocabulary.id(of: scalar) { ids.append(id) } else { skippedCharacters += 1 }
            }
            if ids.count == start { empty += 1; continue }
            examples.append(Example(label: classIndex, start: start, count: ids.count - start))
        }
        var result = LabelledExamples(labels: labels, tokens: TokenStore(ids, vocabularySize: vocabulary.count), examples: examples)
        result.skippedCharacters = skippedCharacters
        result.skippedUnknownLabels = unknown
        result.skippedEmpty = empty
        return result
    }

    /// `read(lines:…)` of a text in memory.
    public static func read(text: String, name: String, vocabulary: Vocabulary, labels: [String]) throws -> LabelledExamples {
        try read(lines: LineReader(bytes: Array(text.utf8), name: name), vocabulary: vocabulary, labels: labels)
    }

    /// `read(lines:…)` of the file or pipe at `path` (`flag` names it in errors), streamed: at
    /// most `Corpus.maximumFileBytes` in all, as for a training file.
    public static func read(path: String, flag: String = "--data", vocabulary: Vocabulary, labels: [String]) throws -> LabelledExamples {
        try read(lines: LineReader(path: path, flag: flag, maximumTotalBytes: Corpus.maximumFileBytes),
                 vocabulary: vocabulary, labels: labels)
    }

    /// Unlabelled lines (`recur predict`) as examples of class 0, characters outside the
    /// vocabulary dropped (counted); empty lines are kept as empty (count 0) examples.
    public static func unlabelled(lines: some Sequence<String>, vocabulary: Vocabulary) -> (LabelledExamples, dropped: Int) {
        var ids: [Int32] = [], examples: [Example] = [], dropped = 0
        for line in lines {
            let start = ids.count
            for scalar in line.unicodeScalars {
                if let id = vocabulary.id(of: scalar) { ids.append(id) } else { dropped += 1 }
            }
            examples.append(Example(label: 0, start: start, count: ids.count - start))
        }
        return (LabelledExamples(labels: [], tokens: TokenStore(ids, vocabularySize: vocabulary.count), examples: examples), dropped)
    }
}
