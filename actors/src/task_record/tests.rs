use super::*;
use commonware_runtime::{Runner as _, Supervisor as _, deterministic};

fn request(height: u64, task: u8, output: u8) -> SignRequest {
    SignRequest {
        height,
        task_id: [task; 32],
        output: [output; 32],
    }
}

async fn open(context: &deterministic::Context) -> TaskRecord<deterministic::Context> {
    TaskRecord::init(
        context.child("task_record"),
        Config {
            partition: "task-record".into(),
        },
    )
    .await
    .expect("the record opens")
}

fn conflict(task: u8, recorded: u8, asked: u8) -> Verdict {
    Verdict::Refuse(Refusal::Conflict {
        task_id: [task; 32],
        recorded: [recorded; 32],
        asked: [asked; 32],
    })
}

#[test]
fn a_second_output_for_a_task_is_refused_and_the_same_one_allowed() {
    deterministic::Runner::default().start(|context| async move {
        let mut record = open(&context).await;
        let verdicts = record
            .decide(&[
                request(1, 1, 10),
                request(1, 2, 20),
                // Within one batch, a later request is judged against an earlier one.
                request(1, 1, 11),
                request(1, 2, 20),
            ])
            .await
            .expect("storage works");
        assert_eq!(
            verdicts,
            vec![
                Verdict::Sign,
                Verdict::Sign,
                conflict(1, 10, 11),
                Verdict::SignAgain
            ]
        );
        let verdicts = record
            .decide(&[request(2, 1, 12), request(2, 1, 10), request(2, 0, 1)])
            .await
            .expect("storage works");
        assert_eq!(
            verdicts,
            vec![
                conflict(1, 10, 12),
                Verdict::SignAgain,
                Verdict::Refuse(Refusal::Reserved)
            ]
        );
        assert_eq!(record.len(), 2);
    });
}

#[test]
fn a_crash_right_after_a_verdict_keeps_the_record() {
    let (verdicts, checkpoint) =
        deterministic::Runner::default().start_and_recover(|context| async move {
            let mut record = open(&context).await;
            // The run ends as soon as the call returns: whatever was not synced is lost.
            record
                .decide(&[request(3, 1, 10), request(4, 2, 20)])
                .await
                .expect("storage works")
        });
    assert_eq!(verdicts, vec![Verdict::Sign, Verdict::Sign]);
    deterministic::Runner::from(checkpoint).start(|context| async move {
        let mut record = open(&context).await;
        assert_eq!(record.len(), 2);
        let verdicts = record
            .decide(&[request(5, 1, 11), request(5, 2, 20), request(5, 3, 30)])
            .await
            .expect("storage works");
        assert_eq!(
            verdicts,
            vec![conflict(1, 10, 11), Verdict::SignAgain, Verdict::Sign]
        );
    });
}

#[test]
fn pruned_tasks_are_refused_even_after_a_restart() {
    let checkpoint = {
        let (_, checkpoint) =
            deterministic::Runner::default().start_and_recover(|context| async move {
                let mut record = open(&context).await;
                record
                    .decide(&[request(1, 1, 10), request(5, 2, 20)])
                    .await
                    .expect("storage works");
                // No task was ordered at height 3: the floor must be remembered all the same.
                record.prune(3).await.expect("storage works");
                assert_eq!(record.len(), 1);
            });
        checkpoint
    };
    deterministic::Runner::from(checkpoint).start(|context| async move {
        let mut record = open(&context).await;
        assert_eq!(
            record.len(),
            1,
            "task 2 (height 5) is kept, task 1 forgotten"
        );
        let verdicts = record
            .decide(&[request(2, 1, 11), request(3, 4, 40), request(5, 2, 21)])
            .await
            .expect("storage works");
        assert_eq!(
            verdicts,
            vec![
                Verdict::Refuse(Refusal::Forgotten {
                    task_id: [1; 32],
                    height: 2,
                    oldest: 3
                }),
                Verdict::Sign,
                conflict(2, 20, 21),
            ]
        );
    });
}
