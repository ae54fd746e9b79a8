/// The built-in classification data (`recur train --task classify` without `--data`): lines
/// `label<TAB>text`, generated from a seed, where the label is the first letter of the text
/// and the rest is noise. A unidirectional network has to carry that letter over up to
/// `maximumLength` steps to the end of the sequence (where its feature is read); a
/// bidirectional one meets it last in its reverse direction. Four balanced classes, so the
/// majority baseline is about 25%.
public enum BuiltinLabelled {
    public static let labels = ["a", "b", "c", "d"]
    public static let defaultCount = 4_000
    public static let minimumLength = 4, maximumLength = 48

    public static func text(seed: UInt64 = 1234, count: Int = defaultCount) -> String {
        var random = SeededGenerator(seed: seed ^ 0x1AB_E11ED)
        let noise = Array("abcdefgh ")
        var lines: [String] = []
        lines.reserveCapacity(count)
        for _ in 0..<count {
            let label = labels[random.nextInt(below: labels.count)]
            let length = minimumLength + random.nextInt(below: maximumLength - minimumLength + 1)
            var text = label
            for _ in 1..<length { text.append(noise[random.nextInt(below: noise.count)]) }
            lines.append(label + "\t" + text)
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension Corpus {
    /// The built-in data of `task`, named "builtin" (a checkpoint's config says which task).
    public static func builtin(task: TrainingTask?) -> Corpus {
        task == .classify ? Corpus(text: BuiltinLabelled.text(), name: builtinName) : builtin()
    }
}
